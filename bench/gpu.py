"""GPU smoke and throughput: every experiment notebook once on CUDA at its (small) defaults, the main job on CUDA and on the CPU.

Each run is a papermill run of the notebook in its own kernel (`medsegpaper.sweep_cluster.execute_run`), its
results tables and working folders under `--work`, never the repository's. On CUDA the notebooks compute in
bf16 (`amp`/`precision` 'auto'; `--amp` sets it where a notebook declares `amp`). While a run goes, nvidia-smi
samples the GPU every 0.2 s. Printed and written to `--out` (one row per run, with the GPU, driver, torch and
git commit): wall time, items per second where the run's row says how many images it trained on (iterations x
batch, or batches x batch size), peak GPU memory and the GPU's busy share over the run. Without CUDA it says so
in one line and exits 2; `--dry-run` lists what it would run and exits 0, on any machine.

    python bench/gpu.py [--dry-run] [--only train oct_ablation ...] [--amp bf16] [--out results/gpu_smoke.csv]
"""
import argparse, json, os, re, shutil, subprocess, sys, tempfile, threading, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = ('train', 'pretrain', 'context_vs_fbr', 'oct_ablation', 'av_segmentation', 'segae', 'transferability')


def experiment_notebooks() -> list[str]:
    "The notebooks of `nbs/` that declare an experiment (their cell after `parameters` calls `experiment(globals(), ...)`)."
    return sorted(p.stem for p in (REPO/'nbs').glob('*.ipynb') if not p.stem[0].isdigit() and 'experiment(globals()' in p.read_text())


def smoke_runs(amp: str | None = None, only=()) -> list[dict]:
    "The runs of the smoke: each experiment notebook on CUDA at its defaults, and the main job on the CPU beside it."
    runs = [{'label': nb, 'notebook': nb, 'device': 'cuda'} for nb in NOTEBOOKS] + [{'label': 'train (cpu)', 'notebook': 'train', 'device': 'cpu'}]
    if amp: runs = [{**r, 'amp': amp} if r['device'] == 'cuda' else r for r in runs]
    return [r for r in runs if not only or r['notebook'] in only]


def slug(label: str) -> str: return re.sub(r'\W+', '_', label).strip('_')


def run_params(run: dict, work: Path) -> dict:
    "Papermill parameters of `run`: its device (and amp), every results table and working folder of the notebook under `work`."
    from medsegpaper.experiment import notebook_experiment
    defaults = notebook_experiment(REPO/'nbs'/f"{run['notebook']}.ipynb").defaults
    folder = work/slug(run['label'])
    params = {'device': run['device'], **({'amp': run['amp']} if 'amp' in run and 'amp' in defaults else {})}
    params.update({n: str(folder/f'{n}.csv') for n in defaults if n.endswith('results')})
    params.update({n: str(folder/n) for n, v in defaults.items() if n.endswith('_dir') and isinstance(v, str) and v})
    return params


class GPUSampler(threading.Thread):
    "nvidia-smi's utilisation (%) and memory used (MiB) of GPU 0, every `interval_ms`, until `stop()`."
    def __init__(self, interval_ms: int = 200):
        super().__init__(daemon=True)
        self.samples, self.proc = [], subprocess.Popen(
            ['nvidia-smi', '--id=0', '--query-gpu=utilization.gpu,memory.used', '--format=csv,noheader,nounits', f'--loop-ms={interval_ms}'],
            stdout=subprocess.PIPE, text=True)
    def run(self):
        for line in self.proc.stdout:
            try: self.samples.append(tuple(float(v) for v in line.split(',')))
            except ValueError: pass
    def stop(self) -> dict:
        self.proc.terminate(); self.proc.wait(); self.join(2)
        util, mem = zip(*self.samples) if self.samples else ((float('nan'),), (float('nan'),))
        return {'gpu_busy_share': sum(u > 0 for u in util) / len(util), 'gpu_util_mean': sum(util) / len(util),
                'gpu_mem_peak_mib': max(mem), 'gpu_samples': len(self.samples)}


def items_trained(row: dict) -> float | None:
    "Images a run trained on, from its row: iterations x batch size, or batches per epoch x batch size x epochs; None when it does not say."
    if row.get('iters_trained') and row.get('batch_size'): return float(row['iters_trained']) * float(row['batch_size'])
    if all(row.get(k) for k in ('batches_per_epoch', 'batch_size_used', 'epochs')):
        return float(row['batches_per_epoch']) * float(row['batch_size_used']) * float(row['epochs'])
    return None


def first_row(params: dict) -> dict:
    "The first row of the run's first results table, if it wrote one."
    import pandas as pd
    tables = [Path(v) for n, v in params.items() if n.endswith('results') and Path(v).exists()]
    return pd.read_csv(tables[0]).iloc[0].to_dict() if tables else {}


def provenance() -> dict:
    import torch
    from medsegpaper.results import git_commit
    gpu = subprocess.run(['nvidia-smi', '--id=0', '--query-gpu=name,driver_version', '--format=csv,noheader'], capture_output=True, text=True).stdout.strip()
    return {'gpu': gpu, 'torch_version': torch.__version__, 'cuda_version': torch.version.cuda, 'git_commit': git_commit(REPO)}


def smoke(run: dict, work: Path, sampler=GPUSampler) -> dict:
    "Run `run` with the GPU sampled (by a `sampler` thread with `start` and `stop`); its row of the smoke table."
    from medsegpaper.sweep_cluster import execute_run
    params = run_params(run, work)
    sampler = sampler(); sampler.start()
    t0 = time.perf_counter()
    res = execute_run(REPO/'nbs'/f"{run['notebook']}.ipynb", work/'notebooks'/slug(run['label']), params, cwd=REPO)
    wall, gpu = time.perf_counter() - t0, sampler.stop()
    items = items_trained(row := first_row(params))
    return {'label': run['label'], 'notebook': run['notebook'], 'device': run['device'], 'amp': run.get('amp', 'auto'), 'state': res['state'],
            'error': res['error'][:300], 'wall_s': round(wall, 2), 'items': items, 'items_per_s': round(items / wall, 2) if items else None,
            **gpu, 'notebook_run_id': row.get('run_id', '')}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--dry-run', action='store_true', help='list the runs and their parameters, run nothing')
    ap.add_argument('--only', nargs='*', default=(), choices=NOTEBOOKS, metavar='NOTEBOOK', help=f"only these notebooks ({', '.join(NOTEBOOKS)})")
    ap.add_argument('--amp', choices=('auto', 'fp32', 'bf16', 'fp16'), help="the CUDA runs' precision, where the notebook declares `amp`")
    ap.add_argument('--out', type=Path, default=REPO/'results'/'gpu_smoke.csv')
    ap.add_argument('--work', type=Path, default=None, help='folder for the runs (default: a temporary one, removed after)')
    a = ap.parse_args(argv)
    if missing := sorted(set(experiment_notebooks()) - set(NOTEBOOKS)):
        sys.exit(f"bench/gpu.py: experiment notebooks without a smoke run: {', '.join(missing)}")
    runs = smoke_runs(a.amp, a.only)
    work = a.work or Path(tempfile.gettempdir())/f'gpu_smoke_{os.getpid()}'  # made by the runs, not by --dry-run
    if a.dry_run:
        for r in runs: print(f"{r['label']:<18} nbs/{r['notebook']}.ipynb  {json.dumps(run_params(r, work))}")
        return 0
    import torch
    if not torch.cuda.is_available():
        print('bench/gpu.py: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU machine, or --dry-run'); return 2
    if not shutil.which('nvidia-smi'):
        print('bench/gpu.py: nvidia-smi is not on PATH; the GPU busy share and memory are sampled with it'); return 2
    from medsegpaper.results import ResultsTable, run_id
    prov, table = provenance(), ResultsTable(a.out)
    try:
        for r in runs:
            row = {**smoke(r, work), **prov}
            row = {'run_id': run_id({k: row[k] for k in ('label', 'device', 'amp', 'gpu', 'git_commit')}), **row}
            print(json.dumps(row), flush=True)
            table.upsert(row)
    finally:
        if a.work is None: shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__': sys.exit(main())
