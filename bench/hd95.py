"""HD95: medsegpaper.metrics.hd95 vs MONAI compute_hausdorff_distance(percentile=95) on CPU.

3D masks of 160^3: smooth shapes (ellipsoids) and noisy shapes (thresholded smoothed noise),
isotropic and anisotropic spacing. Prints the median time of a few repeats for each, their
ratio, and the largest absolute and relative differences in value (MONAI returns float32).
Also times the plain approach (binary_erosion surfaces + one distance_transform_edt per
direction inside the joint bounding box + 1 voxel), which doubles as a float64 check of our values.

    python bench/hd95.py [--size 160] [--repeats 5]
"""
import argparse, time, warnings
import numpy as np, torch
from scipy import ndimage as ndi
from monai.metrics import compute_hausdorff_distance
from medsegpaper.metrics import hd95

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
    c = n / 2
    yield 'ellipsoids, 1 mm', ellipsoid(n, (c, c - 2, c + 2), (.37 * n, .31 * n, .25 * n)), ellipsoid(n, (c + 3, c, c), (.36 * n, .33 * n, .26 * n)), (1., 1., 1.)
    yield 'ellipsoids shifted 8, 1 mm', ellipsoid(n, (c, c, c), (.3 * n, .25 * n, .2 * n)), ellipsoid(n, (c + 8, c, c - 4), (.3 * n, .25 * n, .2 * n)), (1., 1., 1.)
    yield 'small sphere pair, 1 mm', ellipsoid(n, (40, 50, 60), (12, 12, 12)), ellipsoid(n, (42, 50, 61), (11, 12, 13)), (1., 1., 1.)
    p, t = noisy_pair(n, 0)
    yield 'noise, 1 mm', p, t, (1., 1., 1.)
    yield 'noise, 2.5x0.8x0.8 mm', p, t, (2.5, .8, .8)

def timed(f, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter(); value = f(); times.append(time.perf_counter() - start)
    return float(np.median(times)), value

def main(size=160, repeats=5):
    torch.set_num_threads(1)
    warnings.simplefilter('ignore')
    print(f"{'case':30s} {'ours s':>8s} {'MONAI s':>8s} {'ratio':>6s} {'HD95 ours':>12s} {'HD95 MONAI':>12s} {'|diff|':>9s}"
          f" {'EDT s':>7s} {'|ours-EDT|':>10s}")
    worst_abs = worst_rel = worst_edt = 0.
    ratios = []
    for name, pred, target, spacing in cases(size):
        onehot = [torch.from_numpy(np.stack([~m, m]))[None] for m in (pred, target)]
        t_ours, ours = timed(lambda: hd95(pred, target, spacing), repeats)
        t_monai, ref = timed(lambda: compute_hausdorff_distance(*onehot, percentile=95, spacing=list(spacing)).item(), repeats)
        t_edt, edt = timed(lambda: hd95_edt_bbox(pred, target, spacing), repeats)
        diff = abs(ours - ref); worst_abs = max(worst_abs, diff); worst_rel = max(worst_rel, diff / abs(ref))
        worst_edt = max(worst_edt, abs(ours - edt))
        ratios.append(t_monai / t_ours)
        print(f"{name:30s} {t_ours:8.3f} {t_monai:8.3f} {t_monai / t_ours:6.2f} {ours:12.6f} {ref:12.6f} {diff:9.2e}"
              f" {t_edt:7.3f} {abs(ours - edt):10.2e}")
    print(f"size {size}^3, median of {repeats}, 1 torch thread; speed-up min {min(ratios):.2f} "
          f"geometric mean {np.exp(np.mean(np.log(ratios))):.2f}; vs MONAI largest |diff| {worst_abs:.2e}, "
          f"relative {worst_rel:.2e}; vs float64 EDT largest |diff| {worst_edt:.2e}")

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--size', type=int, default=160); ap.add_argument('--repeats', type=int, default=5)
    main(**vars(ap.parse_args()))
