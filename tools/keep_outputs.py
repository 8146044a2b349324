"""Give library notebooks the outputs of their examples, so they read as documentation on GitHub.

    python tools/keep_outputs.py nbs/00_core.ipynb [nbs/01_results.ipynb ...]

Each notebook is executed twice in a Jupyter kernel (in `nbs/`, as `nbdev_test` runs it; cells
marked `#| slow`, `#| gpu` or `#| eval: false` are not run) and a cell keeps its outputs only
when both runs gave the same ones and none is a warning, an error, stderr, a temporary or
machine-specific path, a git commit or an object address: what is kept is what any clean clone prints.
Every other output is cleared. Run `nbdev_clean` afterwards (CI checks the tree is clean)."""
import copy
import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
SKIP = re.compile(r'^#\|\s*(slow|gpu|eval:\s*false)\b', re.M)
UNSTABLE = re.compile(r"/tmp/|/var/folders/| at 0x[0-9a-f]+|\b[0-9a-f]{40}\b|Warning|'\d\d:\d\d'|" + re.escape(str(ROOT)))  # '00:01': fastai's epoch time


def executed(nb):
    "A copy of `nb` executed in a fresh kernel in `nbs/`, skipped cells left empty."
    run = copy.deepcopy(nb)
    for cell in run.cells:
        if cell.cell_type == 'code' and SKIP.search(cell.source): cell.source = ''
    NotebookClient(run, timeout=900, resources={'metadata': {'path': str(ROOT/'nbs')}}).execute()
    return run


def plain(outputs) -> list:
    "`outputs` without execution counts and metadata, for comparing two runs."
    return [{k: v for k, v in o.items() if k not in ('execution_count', 'metadata')} for o in outputs]


def stable(outputs) -> bool:
    "Whether `outputs` may be kept: no stderr, error or unstable text in any of them."
    return not any(o.output_type == 'error' or o.get('name') == 'stderr' or UNSTABLE.search(str(o.get('text', '')) + str(o.get('data', {}).get('text/plain', '')))
                   for o in outputs)


def keep_outputs(path: Path) -> int:
    "Write `path` with the outputs both runs agree on; the number of cells that kept outputs."
    nb = nbformat.read(path, as_version=4)
    first, second = executed(nb), executed(nb)
    kept = 0
    for cell, a, b in zip(nb.cells, first.cells, second.cells):
        if cell.cell_type != 'code': continue
        same = plain(a.outputs) == plain(b.outputs) and stable(a.outputs)
        cell.outputs = a.outputs if same and not SKIP.search(cell.source) else []
        cell.execution_count = None
        kept += bool(cell.outputs)
    nbformat.write(nb, path)
    return kept


if __name__ == '__main__':
    for p in sys.argv[1:]: print(f'{p}: outputs kept in {keep_outputs(Path(p))} cells')
