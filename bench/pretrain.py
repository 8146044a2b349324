"""Study 000's pretraining loop on the CPU: images/s of `medsegpaper.pretrain`'s loop against a plain PyTorch loop, same model and batches.

Both loops train copies of one classifier (`Classifier(pretrain_encoder(...))`, one state dict) on
the same stored batches: one epoch of the real pretraining pipeline (`pretrain_dataloaders` on the
embedded `digits`, with the scheme's per-image transforms), kept as plain tensors, and a few
validation batches. A timed epoch is, in each loop:
- pretraining loop: the Learner `pretrain_learner` builds (label-smoothing loss, AdamW, the
  effective batch by gradient accumulation, the ladder writing the resume state and the encoder,
  with --scheme advanced the Mixup/CutMix/RandomErasing callback) over fastai `DataLoader`s that
  hand the stored batches over unchanged, `learn.fit(1)` with the warm-up/cosine schedule per batch;
- plain loop: for each micro-batch the learning rate of the same schedule, the same batch
  augmentation (advanced), forward, the same loss divided by the micro-batches of its group,
  backward, `torch.optim.AdamW` (same hyperparameters) stepping after each group; then a
  validation pass (loss and top-1) and a `torch.save` of model and optimiser.
Their weights after the untimed warm-up epoch are compared, a check that both do the same work: the
forward and backward passes are the same, fastai's Adam and torch's AdamW do the same update in a
different order of operations, and Adam's per-parameter normalisation magnifies those last-bit
differences over the steps (with stochastic depth, as ResNet50 in the advanced scheme, the two
loops also draw different masks).

On a small shared machine: the arms alternate (A B, B A, ...), torch runs on one thread with
everything else in the main thread, so the process CPU time is the work of the loop; the ratio
held to the target is that of median CPU times, with the paired ratios' median and range, the
ratio of the minima and of median wall times beside it. images/s = training images / CPU time.

    python bench/pretrain.py [--reps 10] [--steps 16] [--encoder unet] [--width 0.125] [--scheme simple]
"""
import argparse, tempfile, time, warnings
from pathlib import Path
import numpy as np, torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.callback.schedule import ParamScheduler
from timm.data import Mixup
from timm.data.random_erasing import RandomErasing
from medsegpaper.core import seed_everything
from medsegpaper.datasets.core import load_items
from medsegpaper.pretrain import (Classifier, PretrainLoss, batch_seed, host_rng, pretrain_dataloaders, pretrain_encoder,
                                  pretrain_learner, study_drop_path, study_lr, warmup_cosine)

TARGET = 1.10

def clock() -> np.ndarray:
    "Wall and process CPU time, in seconds."
    return np.array([time.perf_counter(), time.process_time()])

def stored(dl):
    "The batches of `dl` as plain contiguous tensors."
    return [tuple(t.as_subclass(torch.Tensor).contiguous() for t in b) for b in dl]

def plain_mix(x, y, n_classes, seed, i, smoothing):
    "The advanced scheme's batch augmentation as `MixCutErase` draws it for batch `i` of epoch 0."
    mix = Mixup(mixup_alpha=1., cutmix_alpha=1., prob=0.9, switch_prob=5 / 9, mode='elem', label_smoothing=smoothing, num_classes=n_classes)
    with host_rng(batch_seed(seed, 0, i)):
        x, y = mix(x, y)
        return RandomErasing(0.25, mode='const', device=x.device)(x), y

def plain_epoch(model, opt, train, valid, args, sched, folder):
    start, n, loss_fn = clock(), len(train), PretrainLoss(0.1)
    per = args.batch_size // len(train[0][1])
    model.train()
    for i, (x, y) in enumerate(train):
        for g in opt.param_groups: g['lr'] = sched(i / n)
        if args.scheme == 'advanced': x, y = plain_mix(x.clone(), y, 10, 0, i, 0.1)
        (loss_fn(model(x), y) / min(per, n - i // per * per)).backward()
        if (i + 1) % per == 0 or i + 1 == n: opt.step(); opt.zero_grad()
    model.eval()
    with torch.no_grad():
        losses, correct = zip(*[(loss_fn(out := model(x), y), (out.argmax(1) == y).sum()) for x, y in valid])
    torch.save({'model': model.state_dict(), 'opt': opt.state_dict()}, folder/'plain.pth')
    return clock() - start

def ours_epoch(learn, sched):
    start = clock()
    learn.fit(1, learn.lr, cbs=ParamScheduler({'lr': sched}))
    return clock() - start

def interleaved(arms: dict, reps: int) -> dict:
    "Run every arm `reps` times, alternating the order each repetition."
    out = {k: [] for k in arms}
    for r in range(reps):
        for k in (list(arms) if r % 2 == 0 else list(arms)[::-1]): out[k].append(arms[k]())
    return {k: np.array(v) for k, v in out.items()}

def main(args):
    warnings.simplefilter('ignore')
    torch.set_num_threads(1)
    seed_everything(0)
    root = Path(args.data_root or tempfile.mkdtemp())
    train_items, valid_items = load_items('digits', 'train', root), load_items('digits', 'valid', root)
    dls = pretrain_dataloaders(train_items, valid_items, args.img_size, args.scheme, args.micro_batch)
    train, valid = stored(dls.train)[:args.steps], stored(dls.valid)[:args.valid_steps]
    images = sum(len(y) for _, y in train)
    make = lambda: Classifier(pretrain_encoder(args.encoder, args.width, args.img_size, study_drop_path(args.encoder, args.scheme)), 10)
    ours_model, plain_model = make(), make()
    plain_model.load_state_dict(ours_model.state_dict())
    lr, folder = study_lr(args.encoder, args.scheme), Path(tempfile.mkdtemp())
    sched = warmup_cosine(lr, 0.5)
    learn = pretrain_learner(DataLoaders(DataLoader(train, bs=None), DataLoader(valid, bs=None)), ours_model, folder, 10,
                             args.scheme, keep=[1], batch_size=args.batch_size, lr=lr, device='cpu', progress=False)
    opt = torch.optim.AdamW(plain_model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)
    ours_epoch(learn, sched); plain_epoch(plain_model, opt, train, valid, args, sched, folder)  # warm-up, compared
    diff = max((a - b).abs().max().item() for a, b in zip(ours_model.parameters(), plain_model.parameters()))
    t = interleaved({'pretraining loop': lambda: ours_epoch(learn, sched),
                     'plain torch loop': lambda: plain_epoch(plain_model, opt, train, valid, args, sched, folder)}, args.reps)
    print(f"{args.encoder} width {args.width}, {args.scheme} scheme, img {args.img_size}, micro-batch {args.micro_batch}, "
          f"effective batch {args.batch_size}; {len(train)} training steps ({images} images) + {len(valid)} validation batches "
          f"per epoch; 1 torch thread; {args.reps} interleaved repetitions after one untimed epoch")
    print(f"max |weight difference| after the warm-up epoch, pretraining loop vs plain loop: {diff:.1e}")
    print(f"{'':20s} {'CPU s med':>10s} {'images/s':>9s} {'wall s med':>11s}")
    for k, v in t.items(): print(f"{k:20s} {np.median(v[:, 1]):10.3f} {images / np.median(v[:, 1]):9.1f} {np.median(v[:, 0]):11.3f}")
    ours, plain = t['pretraining loop'], t['plain torch loop']
    r, wall = (np.median(ours[:, c]) / np.median(plain[:, c]) for c in (1, 0))
    lo, mid, hi = np.percentile(ours[:, 1] / plain[:, 1], [10, 50, 90])
    print(f"overhead ratio (plain images/s / ours, CPU): {r:.3f}  (paired {mid:.3f}, 10-90% {lo:.3f}-{hi:.3f}; of minima "
          f"{ours[:, 1].min() / plain[:, 1].min():.3f}; wall {wall:.3f})  target <= {TARGET:.2f}: {'PASS' if r <= TARGET else 'FAIL'}")

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--reps', type=int, default=10, help='interleaved repetitions')
    ap.add_argument('--steps', type=int, default=16, help='training micro-batches per timed epoch (0: the whole epoch, 46)')
    ap.add_argument('--valid-steps', type=int, default=2, help='validation batches per epoch')
    ap.add_argument('--encoder', default='unet', choices=('resnet50', 'resnet50_zeropad', 'unet', 'swin'))
    ap.add_argument('--width', type=float, default=0.125); ap.add_argument('--scheme', default='simple', choices=('simple', 'advanced'))
    ap.add_argument('--img-size', type=int, default=32); ap.add_argument('--micro-batch', type=int, default=32)
    ap.add_argument('--batch-size', type=int, default=64); ap.add_argument('--data-root', default='')
    args = ap.parse_args()
    args.steps = args.steps or None
    main(args)
