"""Sweep costs on this machine, measured in one run: what a sweep adds to each run, and 2 workers against 1.

1. Overhead per run. A sweep of --runs tiny runs of nbs/train.ipynb (1 epoch, 32 px images, batch 4,
   width 4, on the CPU; one seed each) on a local cluster of one worker. From each executed notebook,
   papermill's own timings:
   - kernel start: papermill's start of the notebook to the start of its first cell;
   - imports and plan: the cells that only import, and the experiment cell (it imports the library
     and plans the run: parameter checks, data fingerprint);
   - papermill, rest: the worker's time for the run (`execute_run`: emptying the folder, reading and
     writing the notebook, stopping the kernel) less the notebook's own duration;
   - merge: `merge_run` of each run's folder into the results table, timed on the client (it
     replaces the run's rows, so doing it again changes nothing);
   against the run's own time: every other cell (data, model, training, evaluation, figures).
   Printed as medians over the runs, and their ratio.
2. Speed-up. The same number of runs (other seeds, so none is skipped) on 2 workers, each kernel
   with 1 CPU thread, against the first sweep on 1 worker whose kernels have 2 threads (both use
   the whole machine): the wall time of `run_sweep` from the call to its return (planning and
   cluster start included), and the ratio 1 worker / 2 workers.

One repetition of each: the machine may be shared, so the load average before and after is printed.

    python bench/sweep.py [--runs 6]
"""
import argparse, ast, json, os, statistics, tempfile, time
from datetime import datetime
from pathlib import Path

import nbformat
from medsegpaper.sweep import load_protocol, merge_run, run_folder, run_sweep

REPO = Path(__file__).resolve().parents[1]
TINY = dict(epochs=1, img_size=32, batch_size=4, width=4, device='cpu')
SPEEDUP_TARGET = 1.6


def sweep_protocol(folder: Path, seeds) -> Path:
    "A protocol of tiny train.ipynb runs, one per seed, with its table and run folders under `folder`."
    folder.mkdir(parents=True, exist_ok=True)
    (folder/'p.yaml').write_text(json.dumps({'notebook': str(REPO/'nbs'/'train.ipynb'), 'out': str(folder/'runs'),
                                             'results': {'results': str(folder/'scores.csv')},
                                             'parameters': TINY, 'grid': {'seed': list(seeds)}}))
    return folder/'p.yaml'


def _time(s: str) -> float: return datetime.fromisoformat(s).timestamp()


def _is_setup(cell) -> bool:
    "An import-only cell, the experiment cell, or a parameters cell."
    tags = cell.metadata.get('tags', [])
    if 'parameters' in tags or 'injected-parameters' in tags or 'experiment(globals()' in cell.source: return True
    body = ast.parse(cell.source).body
    return bool(body) and all(isinstance(s, (ast.Import, ast.ImportFrom)) for s in body)


def notebook_times(path, wall_s: float) -> dict:
    "Kernel start, imports and plan, the rest of papermill's time, and the run's own time of one executed notebook."
    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells if c.cell_type == 'code']
    meta = nb.metadata.papermill
    first = min(_time(c.metadata.papermill.start_time) for c in cells)
    setup = sum(c.metadata.papermill.duration for c in cells if _is_setup(c))
    own = sum(c.metadata.papermill.duration for c in cells if not _is_setup(c))
    return {'kernel start': first - _time(meta.start_time), 'imports and plan': setup,
            'papermill, rest': wall_s - meta.duration, 'own': own}


def timed_sweep(proto: Path, workers: int) -> tuple[float, list[dict]]:
    t0 = time.perf_counter()
    rows = run_sweep(proto, workers=workers, progress=False)
    wall = time.perf_counter() - t0
    if bad := [r for r in rows if r['state'] != 'done']: raise RuntimeError(f'runs failed: {bad}')
    return wall, rows


def main(runs: int):
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        one, two = sweep_protocol(Path(d)/'one', range(runs)), sweep_protocol(Path(d)/'two', range(runs, 2 * runs))
        wall1, rows = timed_sweep(one, 1)
        wall2, _ = timed_sweep(two, 2)
        p = load_protocol(one)
        per_run = []
        for r in rows:
            t = notebook_times(r['notebook'], float(r['wall_s']))
            t0 = time.perf_counter(); merge_run(p, r['run_id']); t['merge'] = time.perf_counter() - t0
            assert (run_folder(p, r['run_id'])/'train.ipynb').exists()
            per_run.append(t)
    med = {k: statistics.median(t[k] for t in per_run) for k in per_run[0]}
    overhead = med['kernel start'] + med['imports and plan'] + med['papermill, rest'] + med['merge']
    print(f'{runs} tiny runs of nbs/train.ipynb ({", ".join(f"{k}={v}" for k, v in TINY.items())}); '
          f'load average {load0[0]:.1f} before, {os.getloadavg()[0]:.1f} after (2 cores)')
    print('per run, medians over the 1-worker sweep (2 kernel threads):')
    for k in ('kernel start', 'imports and plan', 'papermill, rest', 'merge'): print(f'  {k:<18}{med[k]:7.2f} s')
    print(f'  {"overhead":<18}{overhead:7.2f} s')
    print(f'  {"run own time":<18}{med["own"]:7.2f} s')
    print(f'overhead / own time: {overhead / med["own"]:.2f}')
    speedup = wall1 / wall2
    print(f'sweep wall time: 1 worker {wall1:.1f} s, 2 workers {wall2:.1f} s (planning and cluster start included)')
    print(f'speed-up of 2 workers over 1: {speedup:.2f}x (target >= {SPEEDUP_TARGET}x): {"met" if speedup >= SPEEDUP_TARGET else "NOT met"}')


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=6, help='runs per sweep (default 6)')
    main(parser.parse_args().runs)
