"""Study 000's robustness score: all variants from one forward pass of each view, against the forward passes alone and against computing each variant on its own.

Three arms on the same images, encoder and seeds:
- `plain`: what any score needs: both colour-jittered views of every batch through the encoder
  (`color_jitter` twice, `encoder_levels` twice), nothing else.
- `ours`: `transferability.robustness`, the 150 variants (3 distances x 5 margins x 5 levels x
  pooled or not) from those two forward passes per batch. Target: at most 1.2x `plain`.
- `naive`: `transferability.robustness_variant` for each of the 150 variants, as study 000's
  code computed them: both views through the encoder again for every variant, one level, one
  distance (`torch.corrcoef` per image for Pearson), float64.
`ours` and `naive` must agree (their largest difference is printed).

On a shared machine: torch runs on --threads threads (default 1) in the main process, so the
process CPU time (`time.process_time`) is the work done, while the wall time also counts the
time other jobs hold the cores. `plain` and `ours` alternate over --reps repetitions after a
warm-up; the ratio held to the target is that of their median CPU times, with the median and
range of the paired ratios beside it. `naive` takes 150 times the forward passes, so it runs once.

    python bench/robustness.py [--encoder resnet50_zeropad] [--width 1.0] [--size 96] [--images 8] [--batch 8] [--reps 15] [--threads 1]
"""
import argparse, time
import numpy as np, torch
from medsegpaper.datasets import load_2d
from medsegpaper.transferability import (batches, color_jitter, encoder_levels, load_encoder, prepare_images, robustness,
                                         robustness_variant)

TARGET = 1.2

def clock() -> np.ndarray: return np.array([time.perf_counter(), time.process_time()])

def plain(enc, x, batch, seed=0):
    "Both jittered views of every batch through the encoder, as `robustness` draws them."
    gen = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        for idx in batches(len(x), batch):
            xb = x[idx.start:idx.stop]
            v0, v1 = color_jitter(xb, gen), color_jitter(xb, gen)
            encoder_levels(enc, v0); encoder_levels(enc, v1)

def timed(f) -> tuple[np.ndarray, object]:
    t = clock(); out = f(); return clock() - t, out

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--encoder', default='resnet50_zeropad'); p.add_argument('--width', type=float, default=1.)
    p.add_argument('--size', type=int, default=96); p.add_argument('--images', type=int, default=8)
    p.add_argument('--batch', type=int, default=8); p.add_argument('--reps', type=int, default=15)
    p.add_argument('--threads', type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    train = load_2d('brain', 'train')
    x = prepare_images([train.images[i] for i in np.linspace(0, len(train) - 1, a.images).round().astype(int)], a.size)
    enc = load_encoder(a.encoder, a.width, a.size)
    print(f'{a.encoder} width {a.width}, {a.images} brain slices at {a.size}x{a.size}, batches of {a.batch}, {a.threads} torch thread(s)')
    plain(enc, x, a.batch); robustness(enc, x, a.batch)   # warm-up
    times = {'plain': [], 'ours': []}
    for r in range(a.reps):
        for arm in (('plain', 'ours') if r % 2 == 0 else ('ours', 'plain')):
            t, out = timed(lambda: plain(enc, x, a.batch) if arm == 'plain' else robustness(enc, x, a.batch))
            times[arm].append(t)
            if arm == 'ours': ours = out
    t_naive, naive = timed(lambda: [robustness_variant(enc, x, r.metric, r.margin, r.level, r.pooled, a.batch) for r in ours.itertuples()])
    P, O = np.array(times['plain']), np.array(times['ours'])
    med_p, med_o = np.median(P, 0), np.median(O, 0)
    paired = O[:, 1] / P[:, 1]
    diff = np.nanmax(np.abs(ours.robustness.to_numpy() - np.array(naive)))
    both_nan = int((np.isnan(ours.robustness.to_numpy()) & np.isnan(np.array(naive))).sum())
    print(f'variants: {len(ours)}; largest |ours - naive|: {diff:.2e}' + (f' ({both_nan} variants NaN in both)' if both_nan else ''))
    print(f'plain forward passes of both views: {med_p[1]:.2f} s CPU ({med_p[0]:.2f} s wall), median of {a.reps}')
    print(f'ours, all {len(ours)} variants:       {med_o[1]:.2f} s CPU ({med_o[0]:.2f} s wall), median of {a.reps}')
    print(f'naive, one variant at a time:  {t_naive[1]:.2f} s CPU ({t_naive[0]:.2f} s wall), once')
    print(f'ours / plain: {med_o[1] / med_p[1]:.3f} (CPU medians; paired ratios median {np.median(paired):.3f}, '
          f'range {paired.min():.3f}-{paired.max():.3f}; wall {med_o[0] / med_p[0]:.3f})  target <= {TARGET}: '
          f"{'met' if med_o[1] / med_p[1] <= TARGET else 'NOT met'}")
    print(f'naive / ours: {t_naive[1] / med_o[1]:.1f} (CPU; wall {t_naive[0] / med_o[0]:.1f})')

if __name__ == '__main__': main()
