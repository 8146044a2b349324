"""The main job on a shared machine: its timed part idle and beside busy processes, under the package's OpenMP wait policy and under libgomp's defaults.

The timed part is what `nbs/train.ipynb` runs inside `run.track` at its defaults: build the
learner, train the width-1/8 U-Net on the embedded brain for 12 epochs (one-cycle Adam,
Dice + CE), predict the test slices and score them. Each run is a fresh interpreter, since
OpenMP reads its wait settings once, when torch loads it:
- `policy`: the environment without GOMP_SPINCOUNT / KMP_BLOCKTIME, so `import medsegpaper`
  chooses them from the load it sees (brief spinning when each thread can have a free core,
  none otherwise; `medsegpaper.thread_policy`, printed);
- `default`: libgomp's own defaults, set explicitly (GOMP_SPINCOUNT=300000, KMP_BLOCKTIME=200),
  as every run had before the policy.
Each arm runs idle, then beside `--busy` processes that spin on a core each (started and
stopped here); the arms alternate within a repetition. Printed per arm: median wall seconds
idle and busy, their ratio (the slowdown; target <= 4), CPU seconds, and the policy's idle
time over the defaults' (target <= 1.10). Dice is printed too: the policy must not change it.

    python bench/contention.py [--busy 2] [--reps 1] [--epochs 12] [--arms policy,default]
"""
import argparse, json, os, statistics, subprocess, sys, time

ARMS = {'policy': {}, 'default': {'GOMP_SPINCOUNT': '300000', 'KMP_BLOCKTIME': '200'}}


def timed_part(epochs: int) -> dict:
    "The main job's training and evaluation at nbs/train.ipynb's defaults; wall and CPU seconds, mean Dice, the policy."
    import medsegpaper, torch
    from medsegpaper.core import seed_everything, get_device
    from medsegpaper.datasets import load_2d
    from medsegpaper.transforms import seg_dataloaders
    from medsegpaper.models import get_model
    from medsegpaper.losses import get_loss
    from medsegpaper.metrics import evaluate_segmentation
    from medsegpaper.train import make_learner, fit, predict_probs
    dev = get_device('cpu'); seed_everything(0, dev)
    train, valid, test = (load_2d('brain', s) for s in ('train', 'valid', 'test'))
    dls = seg_dataloaders(train, valid, img_size=96, flip='h', rotate=10., batch_size=8, seed=0, device=dev)
    net = get_model('unet', train.in_channels, train.n_classes, width=0.125)
    t0, c0 = time.perf_counter(), time.process_time()
    learn = make_learner(dls, net, get_loss('dice_ce'), 'adam', 3e-3, 1e-4, dev, None)
    with learn.no_bar(), learn.no_logging(): fit(learn, epochs, schedule='onecycle')
    probs = predict_probs(learn.model, test.images, dls.valid.dataset.tfm, dev, 8)
    scores = evaluate_segmentation([p.argmax(0) for p in probs], test.labels, test.n_classes, class_names=test.classes)
    return dict(wall=time.perf_counter() - t0, cpu=time.process_time() - c0, dice=scores['dice_mean'],
                policy=medsegpaper.thread_policy(), threads=torch.get_num_threads())


def run_arm(arm: str, epochs: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ('GOMP_SPINCOUNT', 'KMP_BLOCKTIME', 'OMP_WAIT_POLICY')}
    out = subprocess.run([sys.executable, __file__, '--child', str(epochs)], env={**env, **ARMS[arm]},
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def busy(n: int) -> list:
    return [subprocess.Popen([sys.executable, '-c', 'while True: pass']) for _ in range(n)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--busy', type=int, default=2); ap.add_argument('--reps', type=int, default=1)
    ap.add_argument('--epochs', type=int, default=12); ap.add_argument('--arms', default='policy,default')
    ap.add_argument('--child', type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child: return print(json.dumps(timed_part(a.child)))
    arms, res = a.arms.split(','), {}
    print(f'{os.cpu_count()} cores; main job {a.epochs} epochs; {a.busy} busy processes; {a.reps} repetition(s)')
    for rep in range(a.reps):
        for arm in arms if rep % 2 == 0 else arms[::-1]:
            for load in ('idle', 'busy'):
                spinners = busy(a.busy) if load == 'busy' else []
                try: r = run_arm(arm, a.epochs)
                finally:
                    for p in spinners: p.kill(); p.wait()
                res.setdefault((arm, load), []).append(r)
                print(f'  {arm:8s} {load}: {r["wall"]:6.1f} s wall, {r["cpu"]:6.1f} s CPU, Dice {r["dice"]:.4f}, {r["policy"]}', flush=True)
    med = lambda arm, load, k='wall': statistics.median(r[k] for r in res[arm, load])
    for arm in arms:
        print(f'{arm:8s}: idle {med(arm, "idle"):.1f} s, busy {med(arm, "busy"):.1f} s -> slowdown {med(arm, "busy") / med(arm, "idle"):.2f}x'
              f' (CPU {med(arm, "idle", "cpu"):.1f} / {med(arm, "busy", "cpu"):.1f} s)' + ('  target <= 4x' if arm == 'policy' else ''))
    if {'policy', 'default'} <= set(arms):
        print(f'policy idle / default idle: {med("policy", "idle") / med("default", "idle"):.3f}  target <= 1.10')


if __name__ == '__main__': main()
