"bench/gpu.py where there is no CUDA: the dry run lists every experiment notebook, a real run says so and exits 2, and one smoke run's row (its GPU sampler stubbed) is right."
import importlib.util, re, subprocess, sys
from pathlib import Path

import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location('bench_gpu', REPO/'bench'/'gpu.py')
gpu = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(gpu)


def bench(*args):
    return subprocess.run([sys.executable, 'bench/gpu.py', *map(str, args)], cwd=REPO, capture_output=True, text=True)


def test_the_dry_run_lists_every_experiment_notebook_and_writes_nothing(tmp_path):
    r = bench('--dry-run', '--work', tmp_path/'w', '--out', tmp_path/'smoke.csv')
    assert r.returncode == 0, r.stderr
    experiments = gpu.experiment_notebooks()
    assert {'train', 'oct_ablation', 'av_segmentation', 'segae'} <= set(experiments) and len(experiments) >= 7
    assert set(re.findall(r'nbs/(\w+)\.ipynb', r.stdout)) == set(experiments), r.stdout
    assert r.stdout.count('"device": "cuda"') == len(experiments) and r.stdout.count('"device": "cpu"') == 1
    assert str(REPO/'results') not in r.stdout  # every table and folder of a run is under --work
    assert not (tmp_path/'w').exists() and not (tmp_path/'smoke.csv').exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the answer where there is no CUDA')
def test_without_cuda_it_says_so_in_one_line_and_exits_2(tmp_path):
    r = bench('--out', tmp_path/'smoke.csv')
    assert r.returncode == 2 and 'no CUDA device' in r.stdout and len(r.stdout.strip().splitlines()) == 1, (r.stdout, r.stderr)
    assert not (tmp_path/'smoke.csv').exists()


class NoGPU:
    def start(self): pass
    def stop(self): return {'gpu_busy_share': float('nan'), 'gpu_util_mean': float('nan'), 'gpu_mem_peak_mib': float('nan'), 'gpu_samples': 0}


def test_a_smoke_run_of_the_main_job_on_the_cpu_in_bf16(tmp_path):
    row = gpu.smoke({'label': 'train (cpu)', 'notebook': 'train', 'device': 'cpu', 'amp': 'bf16'}, tmp_path, NoGPU)
    assert row['state'] == 'done', row
    scores = pd.read_csv(tmp_path/'train_cpu'/'results.csv').iloc[0]
    assert scores['amp'] == 'bf16' and scores['device'] == 'cpu'
    assert row['items'] == scores['batches_per_epoch'] * scores['batch_size_used'] * scores['epochs'] > 0
    assert row['items_per_s'] == round(row['items'] / row['wall_s'], 2)
    assert row['notebook_run_id'] in set(pd.read_csv(REPO/'results'/'train_scores.csv')['run_id'])  # the default run, its id unchanged
