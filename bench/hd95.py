"""Surface distances on CPU: medsegpaper vs MONAI (and DeepMind's surface-distance), timed side by side in one run.

3D masks of size^3: smooth shapes (ellipsoids) and noisy shapes (thresholded smoothed noise),
isotropic and anisotropic spacing. For each case it prints the median time of `repeats` calls
and the value of:
- HD95 (max of the two directed 95th percentiles on voxel surfaces): `metrics_surface.hd95` vs
  MONAI `compute_hausdorff_distance(percentile=95)`, and the largest difference from a float64
  reference (erosion surfaces and two EDTs in the joint bounding box);
- normalised surface Dice at `tolerance` mm, the reference definition (surface elements weighted
  by area): `metrics_surface.surface_dice` vs MONAI `compute_surface_dice(use_subvoxels=True)`
  and DeepMind `compute_surface_dice_at_tolerance(compute_surface_distances(...))`.
Ratios are the other implementation's time over ours; MONAI runs with 1 torch thread.

    python bench/hd95.py                      # 96^3, 3 repeats: about a minute
    python bench/hd95.py --size 160
    python bench/hd95.py --size 256 --repeats 1
"""
import argparse, time, warnings
import numpy as np, torch
from scipy import ndimage as ndi
from monai.metrics import compute_hausdorff_distance, compute_surface_dice
import surface_distance as deepmind
from medsegpaper.metrics_surface import hd95, surface_dice

def hd95_edt_bbox(pred, target, spacing):
    "Reference: erosion surfaces and two EDTs in the joint bounding box (+1 voxel)."
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in ndi.find_objects((pred | target).astype(np.uint8))[0])
    sp, st = (m[box] & ~ndi.binary_erosion(m[box]) for m in (pred, target))
    d_pt = ndi.distance_transform_edt(~st, sampling=spacing)[sp]
    d_tp = ndi.distance_transform_edt(~sp, sampling=spacing)[st]
    return max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))

def ellipsoid(n, centre, radii):
    grid = np.ogrid[tuple(slice(0, n) for _ in range(3))]
    return sum(((g - c) / r)**2 for g, c, r in zip(grid, centre, radii)) <= 1

def noisy_pair(n, seed):
    rng = np.random.default_rng(seed)
    base = ndi.gaussian_filter(rng.normal(size=(n, n, n)), 4)
    other = base + 0.3 * ndi.gaussian_filter(rng.normal(size=(n, n, n)), 4)
    return base > 0.02, other > 0.02

def cases(n):
    c, r = n / 2, n / 160                              # the small spheres keep their size; the rest scale with n
    yield 'ellipsoids, 1 mm', ellipsoid(n, (c, c - 2, c + 2), (.37 * n, .31 * n, .25 * n)), ellipsoid(n, (c + 3, c, c), (.36 * n, .33 * n, .26 * n)), (1., 1., 1.)
    yield 'ellipsoids shifted 8, 1 mm', ellipsoid(n, (c, c, c), (.3 * n, .25 * n, .2 * n)), ellipsoid(n, (c + 8, c, c - 4), (.3 * n, .25 * n, .2 * n)), (1., 1., 1.)
    yield 'small sphere pair, 1 mm', ellipsoid(n, (40 * r, 50 * r, 60 * r), (12, 12, 12)), ellipsoid(n, (40 * r + 2, 50 * r, 60 * r + 1), (11, 12, 13)), (1., 1., 1.)
    p, t = noisy_pair(n, 0)
    yield 'noise, 1 mm', p, t, (1., 1., 1.)
    yield 'noise, 2.5x0.8x0.8 mm', p, t, (2.5, .8, .8)

def timed(f, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter(); value = f(); times.append(time.perf_counter() - start)
    return float(np.median(times)), value

def main(size=96, repeats=3, tolerance=1.5):
    torch.set_num_threads(1)
    warnings.simplefilter('ignore')
    print(f"{'':30s} | {'HD95':^62s} | {'NSD at ' + str(tolerance) + ' mm (surface elements)':^75s}")
    print(f"{'case':30s} | {'ours s':>7s} {'MONAI s':>7s} {'ratio':>6s} {'value':>10s} {'|MONAI-ours|':>12s} {'|EDT-ours|':>10s} | "
          f"{'ours s':>7s} {'MONAI s':>7s} {'ratio':>6s} {'DeepMind s':>10s} {'ratio':>6s} {'value':>10s} {'|MONAI-ours|':>12s} {'|DM-ours|':>9s}")
    ratios = {'HD95 vs MONAI': [], 'NSD vs MONAI': [], 'NSD vs DeepMind': []}
    worst = {'HD95 MONAI': 0., 'HD95 EDT': 0., 'NSD MONAI': 0., 'NSD DeepMind': 0.}
    for name, pred, target, spacing in cases(size):
        onehot = [torch.from_numpy(np.stack([~m, m]))[None] for m in (pred, target)]
        t_ours, ours = timed(lambda: hd95(pred, target, spacing), repeats)
        t_monai, ref = timed(lambda: compute_hausdorff_distance(*onehot, percentile=95, spacing=list(spacing)).item(), repeats)
        edt = hd95_edt_bbox(pred, target, spacing)
        n_ours, nsd = timed(lambda: surface_dice(pred, target, tolerance, spacing), repeats)
        n_monai, nsd_monai = timed(lambda: compute_surface_dice(*(x.float() for x in onehot), [tolerance], spacing=list(spacing),
                                                                use_subvoxels=True).item(), repeats)
        n_dm, nsd_dm = timed(lambda: deepmind.compute_surface_dice_at_tolerance(
            deepmind.compute_surface_distances(target, pred, list(spacing)), tolerance), repeats)
        ratios['HD95 vs MONAI'].append(t_monai / t_ours); ratios['NSD vs MONAI'].append(n_monai / n_ours); ratios['NSD vs DeepMind'].append(n_dm / n_ours)
        diffs = {'HD95 MONAI': abs(ours - ref), 'HD95 EDT': abs(ours - edt), 'NSD MONAI': abs(nsd - nsd_monai), 'NSD DeepMind': abs(nsd - nsd_dm)}
        worst = {k: max(v, diffs[k]) for k, v in worst.items()}
        print(f"{name:30s} | {t_ours:7.3f} {t_monai:7.3f} {t_monai / t_ours:6.1f} {ours:10.6f} {diffs['HD95 MONAI']:12.2e} {diffs['HD95 EDT']:10.2e} | "
              f"{n_ours:7.3f} {n_monai:7.3f} {n_monai / n_ours:6.1f} {n_dm:10.3f} {n_dm / n_ours:6.1f} {nsd:10.7f} {diffs['NSD MONAI']:12.2e} {diffs['NSD DeepMind']:9.2e}")
    print(f"size {size}^3, median of {repeats}, 1 torch thread. Speed-up (their time / ours), min and geometric mean: " +
          "; ".join(f"{k} {min(v):.1f}x, {np.exp(np.mean(np.log(v))):.1f}x" for k, v in ratios.items()) +
          ". Largest |difference|: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--size', type=int, default=96); ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--tolerance', type=float, default=1.5)
    main(**vars(ap.parse_args()))
