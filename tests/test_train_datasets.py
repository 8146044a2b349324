"nbs/train.ipynb, run by papermill as the real job runs, on every 2D dataset's sample: each run lands one finite row."
import math, os, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from medsegpaper.datasets import DATASETS, load_2d

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DATASETS = sorted(n for n, s in DATASETS.items() if s.load_2d and (s.write_sample or n == 'synthetic2d'))
TINY = dict(epochs=1, img_size=32, batch_size=2, width=0.0625)
PARALLEL = 2  # notebooks at once: each spends most of its ~20 s importing torch/fastai/timm on one core


def _selected(session) -> list[str]:
    "Datasets whose `test_train_notebook` was collected (so `-k acdc` runs only that notebook)."
    return sorted({it.callspec.params['name'] for it in session.items
                   if getattr(it, 'originalname', '') == 'test_train_notebook' and hasattr(it, 'callspec')})


def _papermill(name, root, out):
    "Write `name`'s sample under `root`, run train.ipynb on it; the finished process and its results CSV."
    if DATASETS[name].write_sample: DATASETS[name].write_sample(root)
    csv = out/f'{name}.csv'
    cmd = [sys.executable, '-m', 'papermill', str(REPO/'nbs/train.ipynb'), str(out/f'{name}.ipynb'), '--cwd', str(REPO),
           '--no-progress-bar', '-p', 'dataset', name, '-p', 'results', str(csv),
           *[a for k, v in TINY.items() for a in ('-p', k, str(v))]]
    env = dict(os.environ, MEDSEGPAPER_DATA=str(root), MEDSEGPAPER_CACHE=str(out/'cache'), OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600), csv


@pytest.fixture(scope='module')
def notebook_runs(request, tmp_path_factory):
    "`get(name)` -> (data root, papermill process, results CSV); without xdist every selected notebook starts at once, `PARALLEL` at a time."
    root, out = tmp_path_factory.mktemp('data'), tmp_path_factory.mktemp('runs')
    with ThreadPoolExecutor(PARALLEL) as pool:
        jobs = {} if os.environ.get('PYTEST_XDIST_WORKER') else {n: pool.submit(_papermill, n, root, out) for n in _selected(request.session)}
        def get(name):
            if name not in jobs: jobs[name] = pool.submit(_papermill, name, root, out)
            return (root, *jobs[name].result())
        yield get


def test_every_2d_dataset_is_covered():
    assert {'synthetic2d', 'acdc', 'msd', 'covid_qu', 'idrid', 'oct_dme', 'drive_av', 'les_av', 'hrf_av'} <= set(NOTEBOOK_DATASETS)


@pytest.mark.parametrize('name', NOTEBOOK_DATASETS)
def test_train_notebook(notebook_runs, name, monkeypatch):
    root, proc, csv = notebook_runs(name)
    assert proc.returncode == 0, f'papermill on {name} failed:\n{proc.stderr[-4000:]}'
    rows = pd.read_csv(csv)
    assert len(rows) == 1 and rows.loc[0, 'dataset'] == name
    row = rows.iloc[0]
    assert {k: row[k] for k in TINY} == TINY
    test = load_2d(name, 'test', root)
    for cls in test.classes[1:]:  # every foreground class is in some test image, so no class mean is a mean of NaNs
        assert row[f'n_empty_{cls}'] < len(test) and 0 <= row[f'dice_{cls}'] <= 1, row.filter(like=cls).to_dict()
    assert math.isfinite(row['dice_mean']) and 0 <= row['dice_mean'] <= 1
    assert 0 <= row['accuracy'] <= 1
