"""Training-loop costs on CPU: the fastai loop against a plain PyTorch loop, and the real data pipeline against in-memory tensors.

1. Loop overhead, per training step. The same pre-built batches (one augmented epoch of the real
   `brain` pipeline, stored as plain tensors) feed both loops, and both models start from one
   state dict:
   - fastai: `make_learner` (as the main job builds it: Recorder, ProgressCallback with its output
     discarded, `progress=False` with --no-progress) over a fastai `DataLoader(batches, bs=None)`,
     which hands the stored batches over unchanged; `learn.fit(1)` with an empty validation set.
   - plain: `model.train()`, then for each batch forward, loss, backward, `opt.step()`, `opt.zero_grad()`.
   Both loops run the same optimiser class, so the ratio measures the loop and nothing else:
   - `fastai` (the default, and the one held to the target): the project's Adam
     (`medsegpaper.train.OPTIMIZERS['adam']`, a fastai `Optimizer`), which the plain loop drives
     directly. This is the optimiser the main job trains with, so the Learner timed is exactly
     the one `make_learner` builds; and as the two loops then do the same arithmetic, their
     weights after the warm-up epoch must agree (printed: a check that the comparison is fair).
   - `torch`: `torch.optim.Adam` with fastai's defaults (betas 0.9/0.99, eps 1e-5, L2 weight
     decay), wrapped in fastai's `OptimWrapper` for the Learner. Shows the loop overhead when
     the optimiser is PyTorch's, and (plain torch vs plain fastai) what fastai's Adam costs.
   The fastai step time is the train phase (`before_train` to `after_train`, taken by a callback,
   which fastai dispatches its events to like any other: that errs against fastai) over the
   number of steps; the whole `fit(1)` call per step, which adds the per-fit set-up, is shown too.
   The same two loops around a 1x1 convolution, whose steps cost next to nothing, give the fastai
   loop's own cost per step in ms, a steadier cross-check of the ratio.
2. Pipeline, per epoch (train + validation), `fit(learn, 1, schedule='constant')` on both:
   `seg_dataloaders(load_2d('brain', ...))` with the main job's augmentation (flip 'h', rotate 10)
   against fastai `DataLoader`s over lists of `(x, y)` tensors already resized and augmented once,
   of the same sizes. Same model init, optimiser and loss. Iterating both data loaders alone
   gives the pipeline's extra cost per epoch, a steadier cross-check of the ratio.

Robustness on a small, shared 2-core machine: warm-up epochs are not timed; the arms alternate
within each repetition (A B, then B A, ...) so that changes in load hit both; torch runs on
--threads threads (default 1) with everything else in the main thread, so the process CPU time
(`time.process_time`) is the work done by the loop, while the wall time also counts the time other
jobs hold the cores. The ratios held to the targets are ratios of median CPU times; beside them:
the median and 10-90% range of the per-repetition (paired) ratios, the ratio of the minima
(contention only slows things down) and the ratio of median wall times. Part 1 times short
epochs (--steps 5) so that more, closer pairs fit in the time; the fastai per-epoch costs then
weigh twice what they do in a 10-step epoch of the main job, which errs against fastai.

    python bench/train_overhead.py [--reps 20] [--steps 5] [--pipeline-reps 11] [--threads 1] [--no-progress] [--torch-adam] [--profile]
"""
import argparse, contextlib, cProfile, io, pstats, time, warnings
from functools import partial
import numpy as np, torch
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.optimizer import OptimWrapper
from medsegpaper.core import seed_everything
from medsegpaper.datasets import load_2d
from medsegpaper.losses import get_loss
from medsegpaper.models import get_model
from medsegpaper.train import OPTIMIZERS, make_learner, fit
from medsegpaper.transforms import SegAugment, seg_dataloaders

OVERHEAD_TARGET, PIPELINE_TARGET = 1.10, 1.15
TORCH_ADAM = dict(betas=(0.9, 0.99), eps=1e-5)  # fastai Adam's defaults: like-for-like hyperparameters

def clock() -> np.ndarray:
    "Wall and process CPU time, in seconds."
    return np.array([time.perf_counter(), time.process_time()])

class TrainPhaseTimer(Callback):
    "Wall and CPU time from `before_train` to `after_train`; ordered first so that it sees every per-step callback."
    order = -1000
    def before_train(self): self.start = clock()
    def after_train(self): self.elapsed = clock() - self.start

def quiet(f, *args, **kwargs):
    "Call `f` with stdout discarded: the console progress bar is still drawn, just not shown."
    with contextlib.redirect_stdout(io.StringIO()): return f(*args, **kwargs)

def fresh_model(state, classes, width):
    model = get_model('unet', 1, classes, base=width)
    model.load_state_dict(state)
    return model

def prebuilt_batches(dls):
    "One epoch of the real training pipeline, as plain contiguous tensors."
    return [tuple(t.as_subclass(torch.Tensor).contiguous() for t in b) for b in dls.train]

def plain_optimizer(kind, model, lr, wd):
    params = [p for p in model.parameters() if p.requires_grad]
    if kind == 'fastai': return OPTIMIZERS['adam'](params, lr=lr, wd=wd)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd, **TORCH_ADAM)

def fastai_learner(kind, model, batches, loss, lr, wd, progress):
    dl = DataLoader(batches, bs=None)
    learn = make_learner(DataLoaders(dl, DataLoader([], bs=None)), model, loss, 'adam', lr, wd,
                         'cpu', cbs=[TrainPhaseTimer()], progress=progress)
    if kind == 'torch': learn.opt_func = partial(OptimWrapper, opt=torch.optim.Adam, **TORCH_ADAM)
    return learn

def plain_epoch(model, opt, batches, loss_func):
    start = clock()
    model.train()
    losses = []
    for xb, yb in batches:
        loss = loss_func(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.detach())
    return clock() - start

def fastai_epoch(learn):
    "Train-phase and whole `fit(1)` times, each (wall, CPU)."
    start = clock()
    quiet(learn.fit, 1)
    return np.stack([learn.train_phase_timer.elapsed, clock() - start])

def max_param_diff(a, b):
    return max((pa - pb).abs().max().item() for pa, pb in zip(a.parameters(), b.parameters()))

def interleaved(arms: dict, reps: int) -> dict:
    "Run every arm `reps` times, alternating the order each repetition; each arm returns a time or a tuple of times."
    out = {k: [] for k in arms}
    for r in range(reps):
        for k in (list(arms) if r % 2 == 0 else list(arms)[::-1]): out[k].append(arms[k]())
    return {k: np.array(v) for k, v in out.items()}

HEADER = f"{'':38s} {'CPU med':>8s} {'p25':>7s} {'p75':>7s} {'wall med':>9s} {'p25':>7s} {'p75':>7s}"

def summary(t) -> str:
    "Median and quartiles, in ms, of CPU time (`t[:, 1]`) and of wall time (`t[:, 0]`)."
    cols = [np.percentile(t[:, c], q) * 1e3 for c in (1, 0) for q in (50, 25, 75)]
    return "{:8.1f} {:7.1f} {:7.1f} {:9.1f} {:7.1f} {:7.1f}".format(*cols)

def ratio_line(name, num, den, target=None):
    "Ratio of medians of CPU time (held to `target`); the paired ratios' median and 10-90% range, the ratio of the minima, the wall-time ratio."
    paired = num[:, 1] / den[:, 1]
    lo, mid, hi = np.percentile(paired, [10, 50, 90])
    r, wall = (np.median(num[:, c]) / np.median(den[:, c]) for c in (1, 0))
    best = num[:, 1].min() / den[:, 1].min()
    verdict = '' if target is None else f"  target <= {target:.2f}: {'PASS' if r <= target else 'FAIL'}"
    return f"{name:34s} {r:6.3f}  (paired {mid:.3f}, 10-90% {lo:.3f}-{hi:.3f}; of minima {best:.3f}; wall {wall:.3f}){verdict}"

def loop_arms(kind, m_fa, m_pl, batches, loss, args):
    "The fastai and plain epochs of `kind` over twin models, after the warm-up."
    learn = fastai_learner(kind, m_fa, batches, loss, args.lr, args.wd, args.progress)
    opt = plain_optimizer(kind, m_pl, args.lr, args.wd)
    for _ in range(args.warmup):
        fastai_epoch(learn); plain_epoch(m_pl, opt, batches, loss)
    return learn, partial(fastai_epoch, learn), partial(plain_epoch, m_pl, opt, batches, loss)

def tiny_twins(classes):
    "Two copies of a 1x1 convolution: a model whose steps cost next to nothing, so that the loops' own cost shows."
    a = torch.nn.Conv2d(1, classes, 1)
    b = torch.nn.Conv2d(1, classes, 1)
    b.load_state_dict(a.state_dict())
    return a, b

def overhead(batches, state, classes, args, kinds):
    loss = get_loss('dice_ce')
    arms, models, steps = {}, {}, len(batches)
    _, arms['fastai/tiny'], arms['plain/tiny'] = loop_arms('fastai', *tiny_twins(classes), batches, loss, args)
    for kind in kinds:
        m_fa, m_pl = fresh_model(state, classes, args.width), fresh_model(state, classes, args.width)
        learn, arms[f'fastai/{kind}'], arms[f'plain/{kind}'] = loop_arms(kind, m_fa, m_pl, batches, loss, args)
        models[kind] = (m_fa, m_pl, learn)
    checks = {k: max_param_diff(m_fa, m_pl) for k, (m_fa, m_pl, _) in models.items()}
    times = interleaved(arms, args.reps)
    per_step = {}
    for k, t in times.items():
        if k.startswith('fastai'):
            per_step[k + ' (train phase)'] = t[:, 0] / steps
            per_step[k + ' (whole fit call)'] = t[:, 1] / steps
        else: per_step[k] = t / steps
    return per_step, checks, models

def pipeline(train, valid, state, classes, args):
    loss = get_loss('dice_ce')
    real = seg_dataloaders(train, valid, img_size=args.img_size, flip='h', rotate=10., batch_size=args.bs, seed=0)
    aug, plain = SegAugment(args.img_size, flip='h', rotate=10.), SegAugment(args.img_size)
    gen = torch.Generator().manual_seed(0)
    tr_items = [aug(x, y, gen) for x, y in zip(train.images, train.labels)]
    va_items = [plain(x, y) for x, y in zip(valid.images, valid.labels)]
    mem = DataLoaders(DataLoader(tr_items, bs=args.bs, shuffle=True, drop_last=len(tr_items) >= args.bs),
                      DataLoader(va_items, bs=args.bs))
    assert (len(mem.train), len(mem.valid)) == (len(real.train), len(real.valid))
    learners = {name: make_learner(dls, fresh_model(state, classes, args.width), loss, 'adam', args.lr, args.wd,
                                   'cpu', progress=args.progress) for name, dls in (('real pipeline', real), ('in-memory tensors', mem))}
    def epoch(learn):
        start = clock()
        quiet(fit, learn, 1, schedule='constant')
        return clock() - start
    def data_only(dls):
        start = clock()
        for dl in (dls.train, dls.valid):
            for _ in dl: pass
        return clock() - start
    for learn in learners.values():
        for _ in range(args.warmup): epoch(learn)
    times = interleaved({k: partial(epoch, l) for k, l in learners.items()}, args.pipeline_reps)
    data = interleaved({f'data only, {k}': partial(data_only, l.dls) for k, l in learners.items()}, 3 * args.pipeline_reps)
    return {**times, **data}, (len(real.train), len(real.valid))

PROFILE_GROUPS = ('fastai/optimizer', 'fastprogress', 'fastai', 'fastcore')

def profile_fastai(learn, steps, epochs=3, top=15):
    "cProfile `epochs` fastai epochs: own Python time per step in fastai's optimiser, progress bar and the rest of fastai/fastcore."
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(epochs): quiet(learn.fit, 1)
    prof.disable()
    stats, n = pstats.Stats(prof), epochs * steps
    own = dict.fromkeys(PROFILE_GROUPS, 0.)
    for (file, _, _), (_, _, tottime, _, _) in stats.stats.items():
        group = next((g for g in PROFILE_GROUPS if f'/{g}/' in file or f'/{g}.py' in file), None)
        if group: own[group] += tottime
    print(f"\nprofile of {epochs} fastai epochs (cProfile inflates Python time): total {stats.total_tt / n * 1e3:.1f} ms per step, of which own time in")
    for g, t in own.items(): print(f"  {g + ('/*' if g != 'fastai/optimizer' else '.py'):22s} {t / n * 1e3:7.2f} ms per step")
    stats.sort_stats('tottime').print_stats('fastai|fastcore|fastprogress', top)

def main(args):
    warnings.simplefilter('ignore')
    torch.set_num_threads(args.threads)
    seed_everything(0)  # as the main job: deterministic algorithms on the CPU, for every arm alike
    train, valid = load_2d('brain', 'train'), load_2d('brain', 'valid')
    classes = train.n_classes
    state = {k: v.clone() for k, v in get_model('unet', 1, classes, base=args.width).state_dict().items()}
    dls = seg_dataloaders(train, valid, img_size=args.img_size, flip='h', rotate=10., batch_size=args.bs, seed=0)
    batches = prebuilt_batches(dls)[:args.steps] if args.steps else prebuilt_batches(dls)
    kinds = ['fastai', 'torch'] if args.torch_adam else ['fastai']
    print(f"unet width {args.width}, img {args.img_size}, batch {args.bs}, lr {args.lr}, wd {args.wd}, "
          f"{args.threads} torch thread(s), progress {'on' if args.progress else 'off'}, deterministic algorithms on; "
          f"warm-up {args.warmup} epoch(s) per arm, not timed")
    per_step, checks, models = overhead(batches, state, classes, args, kinds)
    print(f"\n1. loop overhead: {args.reps} interleaved repetitions of {len(batches)} steps; time per step, ms")
    print(HEADER)
    for k, t in per_step.items(): print(f"{k:38s} {summary(t)}")
    for k, d in checks.items(): print(f"max |weight difference| fastai vs plain after warm-up ({k} Adam): {d:.1e}")
    p_epochs, (n_tr, n_va) = pipeline(train, valid, state, classes, args)
    print(f"\n2. pipeline: {args.pipeline_reps} interleaved repetitions of one epoch ({n_tr} train + {n_va} valid batches); "
          f"time per epoch, ms")
    print(HEADER)
    for k, t in p_epochs.items(): print(f"{k:38s} {summary(t)}")
    print("\nratios of median CPU times (wall-time ratio beside them)")
    print(ratio_line('overhead ratio (fastai Adam)', per_step['fastai/fastai (train phase)'], per_step['plain/fastai'], OVERHEAD_TARGET))
    print(ratio_line('  whole fit call, fastai Adam', per_step['fastai/fastai (whole fit call)'], per_step['plain/fastai']))
    if 'torch' in kinds:
        print(ratio_line('  train phase, torch Adam', per_step['fastai/torch (train phase)'], per_step['plain/torch']))
        print(ratio_line('  plain loops, fastai / torch Adam', per_step['plain/fastai'], per_step['plain/torch']))
    print(ratio_line('pipeline ratio', p_epochs['real pipeline'], p_epochs['in-memory tensors'], PIPELINE_TARGET))
    print("\ncross-checks from the cheap, steadier timings (CPU medians): the costs that differ, added to the plain/in-memory time")
    med = lambda t: np.median(t[:, 1])
    loop = med(per_step['fastai/tiny (train phase)']) - med(per_step['plain/tiny'])
    print(f"  fastai loop's own cost {loop * 1e3:.2f} ms per step (1x1-conv model) -> overhead ratio "
          f"{1 + loop / med(per_step['plain/fastai']):.3f}")
    data = med(p_epochs['data only, real pipeline']) - med(p_epochs['data only, in-memory tensors'])
    print(f"  real pipeline's extra cost {data * 1e3:.1f} ms per epoch (data loading alone) -> pipeline ratio "
          f"{1 + data / med(p_epochs['in-memory tensors']):.3f}")
    if args.profile: profile_fastai(models['fastai'][2], len(batches))

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--reps', type=int, default=20, help='interleaved repetitions of the loop comparison')
    ap.add_argument('--pipeline-reps', type=int, default=11, help='interleaved repetitions of the pipeline comparison')
    ap.add_argument('--steps', type=int, default=5, help='steps per timed epoch in part 1 (0 = a whole epoch of the data, 10 batches)')
    ap.add_argument('--warmup', type=int, default=1, help='untimed epochs per arm before timing')
    ap.add_argument('--width', type=int, default=8); ap.add_argument('--img-size', type=int, default=96)
    ap.add_argument('--bs', type=int, default=8); ap.add_argument('--lr', type=float, default=3e-3)
    ap.add_argument('--wd', type=float, default=1e-4); ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--no-progress', dest='progress', action='store_false', help='make_learner(progress=False)')
    ap.add_argument('--torch-adam', action='store_true', help='add the torch.optim.Adam arms to part 1 (doubles its time)')
    ap.add_argument('--profile', action='store_true', help='cProfile 3 fastai epochs of part 1 afterwards')
    main(ap.parse_args())
