"""Write README.md from the markdown cells of nbs/index.ipynb, and results/MEASURED.md from nbs/measured.ipynb
(nbdev_readme needs quarto, which cannot be installed offline). `--check` exits 1 when either is out of date."""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parents[1]
PAGES = {'nbs/index.ipynb': 'README.md', 'nbs/measured.ipynb': 'results/MEASURED.md'}
stale = []
for source, page in PAGES.items():
    cells = json.loads((root/source).read_text())['cells']
    text = '\n\n'.join(''.join(c['source']).strip() for c in cells if c['cell_type'] == 'markdown') + '\n'
    if '--check' in sys.argv:
        if not (root/page).exists() or (root/page).read_text() != text: stale.append(f'{page} (from {source})')
    else: (root/page).write_text(text)
if stale: sys.exit(f"out of date: {', '.join(stale)}: run python tools/make_readme.py")
