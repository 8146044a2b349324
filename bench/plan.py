"""How fast and small planning is: `medsegpaper-sweep run --dry-run` of a 10^6-run grid over nbs/train.ipynb against the same
command on a one-run grid (what planning the million runs adds: target < 10 s and < 200 MB), and the planner's seconds per run
beside `Experiment.plan`'s, measured on the same runs in one process.

The dry runs execute as a user runs them, the console script beside this interpreter, in a temporary folder; printed are their
wall seconds and peak resident memory (`resource.getrusage` of each child; the one-run command is the start-up: imports and the
data fingerprint, which bench/startup.py times). Run it on an idle machine.

    python bench/plan.py [--axis 10] [--compare 2000]
"""
import argparse, itertools, resource, subprocess, sys, tempfile, time
from pathlib import Path

REPO, BIN = Path(__file__).resolve().parents[1], Path(sys.executable).parent
AXES = {'seed': range(100), 'lr': [0.001 * i for i in range(1, 101)], 'epochs': range(1, 101), 'batch_size': range(1, 101),
        'img_size': range(8, 108), 'rotate': [float(i) for i in range(100)]}


def grid(n: int) -> dict:
    "Six axes of `n` valid values of train.ipynb's parameters: n^6 runs."
    return {k: list(v)[:n] for k, v in AXES.items()}


def protocol(folder: Path, n: int) -> Path:
    lines = [f'notebook: {REPO/"nbs"/"train.ipynb"}', f'results: {{results: {folder/"scores.csv"}}}', f'out: {folder/"runs"}', 'grid:']
    lines += [f'  {k}: {v}' for k, v in grid(n).items()]
    (folder/'p.yaml').write_text('\n'.join(lines) + '\n')
    return folder/'p.yaml'


def dry_run(path: Path) -> tuple[float, float, str]:
    "Wall seconds, peak MB and the first output line of `medsegpaper-sweep run path --dry-run`, in a child of its own."
    probe = ("import resource, subprocess, sys, time\n"
             "t0 = time.perf_counter()\n"
             "out = subprocess.run(sys.argv[1:], capture_output=True, text=True, check=True).stdout\n"
             "print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, out.splitlines()[0], sep='\\t')")
    res = subprocess.run([sys.executable, '-c', probe, str(BIN/'medsegpaper-sweep'), 'run', str(path), '--dry-run'],
                         capture_output=True, text=True, check=True).stdout.strip().split('\t')
    return float(res[0]), float(res[1]), res[2]


def per_run(path: Path, k: int) -> tuple[float, float]:
    "Seconds a run of the first `k` runs of `path` takes to plan with `sweep_plan.run_ids` and with `Experiment.plan` (checked equal)."
    from medsegpaper.experiment import notebook_experiment
    from medsegpaper.sweep import load_protocol, iter_grid
    from medsegpaper.sweep_plan import run_ids
    p = load_protocol(path)
    exp, points, cache = notebook_experiment(p.notebook), list(itertools.islice(iter_grid(p.grid), k)), {}
    exp.plan({}, cache)  # the data fingerprint, once for both
    t0 = time.perf_counter(); fast = [rid for _, rid, _ in run_ids(exp, {}, points, cache)]; t1 = time.perf_counter()
    slow = [exp.plan(q, cache).run_id for q in points]; t2 = time.perf_counter()
    assert fast == slow, 'the planner and Experiment.plan disagree'
    return (t1 - t0) / k, (t2 - t1) / k


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--axis', type=int, default=10, help='values per axis: axis^6 runs (default 10: a million)')
    ap.add_argument('--compare', type=int, default=2000, help='runs planned both ways for the per-run ratio')
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp)/'one').mkdir(); (Path(tmp)/'many').mkdir()
        w1, m1, _ = dry_run(protocol(Path(tmp)/'one', 1))
        path = protocol(Path(tmp)/'many', a.axis)
        wall, mb, first = dry_run(path)
        print(f'dry run of 1 run: {w1:.1f} s wall, {m1:.0f} MB peak (start-up); of {a.axis ** 6:,} runs: {wall:.1f} s, {mb:.0f} MB  ({first})')
        print(f'planning {a.axis ** 6:,} runs adds {wall - w1:.1f} s and {mb - m1:.0f} MB   target < 10 s and < 200 MB: '
              f'{"met" if wall - w1 < 10 and mb - m1 < 200 else "MISSED"}')
        fast, slow = per_run(path, a.compare)
        print(f'per run: planner {1e6 * fast:.1f} us, Experiment.plan {1e6 * slow:.1f} us: {slow / fast:.0f}x')

if __name__ == '__main__': main()
