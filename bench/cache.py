"""Disk cache: a cold epoch (cache empty) vs a cached epoch of reading every ACDC slice through `load_2d`.

Writes an ACDC-layout sample of realistic size with the library's own writers (`write_nifti`):
`--patients` patients (4 in 5 under training/, the rest under testing/), ED and ES frames each, images
`--depth` x 216 x 256 float32 with integer intensities like a scanner's and uint8 labels, all gzipped NIfTI.
An epoch reads the train and test splits with `load_2d('acdc', split, cache=True)`, i.e. every slice
(the valid split is the test split by default). Each repeat starts from an empty cache folder
(MEDSEGPAPER_CACHE), times the first (cold: decode + store) and second (cached) epoch, and, for scale,
an epoch with `cache=False`. Prints the median times, the cold/cached ratio and PASS when it is
>= `--target`. With `--loader`, each epoch then also runs once through `seg_dataloaders` (128 x 128,
flips, batch 8), timed apart, to show what the cache saves out of a whole data epoch.

    python bench/cache.py [--patients 20] [--depth 10] [--repeats 5] [--target 5] [--loader]
"""
import argparse, os, statistics, tempfile, time
from pathlib import Path
import numpy as np, torch
from medsegpaper.datasets import ACDC_CLASSES, load_2d, synthetic_shapes
from medsegpaper.io import write_nifti
from medsegpaper.transforms import seg_dataloaders

H, W, SPACING = 216, 256, (1.5625, 1.5625, 10.)

def write_acdc_like(dest, patients=20, depth=10):
    "ACDC layout (Info.cfg, frameYY.nii.gz, frameYY_gt.nii.gz) with `depth` x 216 x 256 volumes."
    d, n_train = Path(dest)/'ACDC', round(patients * 0.8)
    for i in range(patients):
        pat = d/('training' if i < n_train else 'testing')/f'patient{i + 1:03d}'
        pat.mkdir(parents=True, exist_ok=True)
        es = 10 + i % 5
        (pat/'Info.cfg').write_text(f'ED: 1\nES: {es}\nGroup: NOR\nHeight: 170.0\nNbFrame: 30\nWeight: 70.0\n')
        for k, frame in enumerate((1, es)):
            imgs, lbls = synthetic_shapes(depth, W, len(ACDC_CLASSES), noise=0.05, seed=[i, k])
            img = np.round(np.clip(imgs[:, :H], 0, None) * 400).astype(np.float32).transpose(2, 1, 0)  # (z,y,x) -> NIfTI (x,y,z)
            lbl = lbls[:, :H].astype(np.uint8).transpose(2, 1, 0)
            write_nifti(pat/f'{pat.name}_frame{frame:02d}.nii.gz', img, spacing=SPACING)
            write_nifti(pat/f'{pat.name}_frame{frame:02d}_gt.nii.gz', lbl, spacing=SPACING)
    return d

def epoch(root, cache, loader):
    "Seconds to read every slice of the train and test splits, and then to run one loader epoch over them (0 without `loader`)."
    start = time.perf_counter()
    train, test = (load_2d('acdc', s, root, cache=cache) for s in ('train', 'test'))
    read = time.perf_counter() - start
    if loader:
        dls = seg_dataloaders(train, test, img_size=128, flip='hv', batch_size=8)
        for dl in dls.loaders:
            for _ in dl: pass
    return read, time.perf_counter() - start - read, len(train) + len(test)

def main(patients=20, depth=10, repeats=5, target=5., loader=False):
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)/'data'
        t = time.perf_counter(); d = write_acdc_like(root, patients, depth)
        mb = sum(p.stat().st_size for p in d.rglob('*.nii.gz')) / 2**20
        print(f'sample: {patients} patients x 2 frames, {depth}x{H}x{W} float32 + uint8 labels, {mb:.1f} MiB gzipped NIfTI '
              f'(written in {time.perf_counter() - t:.1f} s)')
        times = {'no cache': [], 'cold': [], 'cached': []}
        loader_s = []
        for r in range(repeats):
            os.environ['MEDSEGPAPER_CACHE'] = str(Path(tmp)/f'cache{r}')
            for kind, cache in (('no cache', False), ('cold', True), ('cached', True)):
                read, rest, n = epoch(root, cache, loader)
                times[kind].append(read); loader_s.append(rest)
        cache_mb = sum(p.stat().st_size for p in (Path(tmp)/'cache0').rglob('*')) / 2**20
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f'epoch = load_2d of train+test ({n} slices), median of {repeats}, cache {cache_mb:.1f} MiB')
    for k, v in med.items(): print(f'  {k:9s} {v:7.3f} s   ({", ".join(f"{x:.3f}" for x in times[k])})')
    ratio = med['cold'] / med['cached']
    if loader:
        lo = statistics.median(loader_s)
        print(f'  + one seg_dataloaders epoch (128 px, flips, batch 8): {lo:.3f} s median, the same with or without cache;'
              f' whole data epoch cold / cached = {(med["cold"] + lo) / (med["cached"] + lo):.1f}x')
    print(f'cold / cached = {ratio:.1f}x (target >= {target:g}x): {"PASS" if ratio >= target else "FAIL"}')
    return ratio >= target

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--patients', type=int, default=20); ap.add_argument('--depth', type=int, default=10)
    ap.add_argument('--repeats', type=int, default=5); ap.add_argument('--target', type=float, default=5.)
    ap.add_argument('--loader', action='store_true')
    raise SystemExit(0 if main(**vars(ap.parse_args())) else 1)
