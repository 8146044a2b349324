"The front door names only what is there: every repository path the README and results/README.md name exists."
import itertools, re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOP = ('nbs', 'results', 'bench', 'tools', 'tests', 'data', 'medsegpaper', '.ci')
PATH = re.compile(rf"(?<![\w/.-])((?:{'|'.join(map(re.escape, TOP))})/[\w./{{}},\[\]*-]*[\w/}}\]])")
WRITTEN = {'results/train_out.ipynb', 'results/runs/', 'results/gpu_smoke.csv'}  # what the README's own commands write (the last on a GPU)


def expand(path: str) -> list[str]:
    "`a/{x,y}.csv` -> a/x.csv, a/y.csv; `a[_cpu].csv` -> a.csv, a_cpu.csv."
    parts = re.split(r'(\{[^}]*\}|\[[^\]]*\])', path)
    options = [p[1:-1].split(',') if p.startswith('{') else ['', p[1:-1]] if p.startswith('[') else [p] for p in parts]
    return [''.join(c) for c in itertools.product(*options)]


def named_paths(text: str) -> set[str]:
    return {p for m in PATH.findall(text) for p in expand(m.rstrip('.,'))}


def test_named_paths_are_found_and_expanded():
    text = "run `nbs/train.ipynb`, rows in `results/oct_ablation[_cpu].csv`; see nbs/protocols/av002_{cpu,full}.yaml, ![f](results/figures/a.png)."
    assert named_paths(text) == {'nbs/train.ipynb', 'results/oct_ablation.csv', 'results/oct_ablation_cpu.csv',
                                 'nbs/protocols/av002_cpu.yaml', 'nbs/protocols/av002_full.yaml', 'results/figures/a.png'}


@pytest.mark.parametrize('page', ['README.md', 'results/README.md', 'results/MEASURED.md'])
def test_every_path_a_page_names_exists(page):
    text = (REPO/page).read_text()
    names = named_paths(text) | ({f'results/{f}' for f in re.findall(r'`([\w.-]+\.csv)`', text)} if page.startswith('results') else set())
    missing = sorted(p for p in names - WRITTEN if not any(REPO.glob(p)) and not (REPO/p).exists())
    assert names and not missing, f'{page} names {missing}, which are not in the repository'
