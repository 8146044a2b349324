"""How fast the console commands answer: `--help` of each (target < 2 s of CPU), and a protocol's `--dry-run` and `status` (target < 10 s).

Each command runs as the user runs it, the console script beside this interpreter, --reps
times; printed are the median wall seconds and the median CPU seconds of the process and its
children (`resource.getrusage`). Run it on an idle machine: the 10 s target is for one.

    python bench/startup.py [--reps 3] [--protocol nbs/protocols/fbr_cpu.yaml]
"""
import argparse, resource, statistics, subprocess, sys, time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(cmd: list[str]) -> tuple[float, float]:
    "Wall and CPU seconds of one run of `cmd` (it must exit 0)."
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall, after = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--protocol', default=str(Path(__file__).resolve().parents[1]/'nbs/protocols/fbr_cpu.yaml'))
    a = ap.parse_args()
    commands = {f'{c} --help': ([str(BIN/c), '--help'], 'cpu', 2.0) for c in ('medsegpaper-data', 'medsegpaper-sweep', 'medsegpaper-segae')}
    commands['medsegpaper-sweep run --dry-run'] = ([str(BIN/'medsegpaper-sweep'), 'run', a.protocol, '--dry-run'], 'wall', 10.0)
    commands['medsegpaper-sweep status'] = ([str(BIN/'medsegpaper-sweep'), 'status', a.protocol], 'wall', 10.0)
    for name, (cmd, held, target) in commands.items():
        runs = [timed(cmd) for _ in range(a.reps)]
        wall, cpu = statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)
        value = cpu if held == 'cpu' else wall
        print(f'{name:36s} {wall:6.2f} s wall {cpu:6.2f} s CPU   target {held} < {target:g} s: {"met" if value < target else "MISSED"}')


if __name__ == '__main__': main()
