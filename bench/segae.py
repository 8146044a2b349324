"""Cost of quality estimation per 3D mask: SegAE against MC dropout (T passes), on the same masks in one run.

SegAE scores a mask from at most 10 of its slices with a 2D network (the study's: ResNet50, 256x256 input);
MC dropout runs the segmentation network T times over the whole volume with dropout active and scores the
mask by the mean pairwise Dice of the samples. The segmentation network is MONAI's 3D U-Net with study
003's settings and dropout 0.1 (`--seg unet3d`, whole volume in one pass), or the 2D U-Net of the
pseudo-labels slice by slice (`--seg unet2d`). Both arms run with random weights: the cost does not depend
on them. Each arm runs in its own process, so its peak memory is its own: time per mask is the median
over `--masks` masks after one warm-up; peak memory is the arm's peak resident memory (CPU) or peak
allocated CUDA memory above what the loaded model and data hold. Printed: both, and MC dropout's cost
over SegAE's (the study claims about 6x the time and 60x the memory).

    python bench/segae.py                              # CPU, 48x160x160 volumes, 3 masks: a few minutes
    python bench/segae.py --device cuda --depth 128 --size 256
    python bench/segae.py --width 0.25 --img-size 64   # a narrow SegAE, as the notebook's CPU default
"""
import argparse, multiprocessing as mp, resource, statistics, time, warnings
import numpy as np

def _rss_mb() -> float:
    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * resource.getpagesize() / 2**20

def _volumes(n, depth, size, seed=0):
    rng = np.random.default_rng(seed)
    g = np.ogrid[:depth, :size, :size]
    for _ in range(n):
        c = rng.uniform([.3 * depth, .3 * size, .3 * size], [.7 * depth, .7 * size, .7 * size])
        r = rng.uniform([.15 * depth, .1 * size, .1 * size], [.3 * depth, .25 * size, .25 * size])
        mask = sum(((x - ci) / ri) ** 2 for x, ci, ri in zip(g, c, r)) <= 1
        img = (rng.normal(0, 30, (depth, size, size)) + 120 * mask - 40).astype(np.float32)
        yield img, mask

def _arm(kind, args, q):
    import torch
    warnings.simplefilter('ignore')
    from medsegpaper.core import get_device
    from medsegpaper.studies.segae004 import SegAE, QualityEstimator, TextEmbeddings, segae_score
    from medsegpaper.studies.segae004_pipeline import mean_pairwise_dice, mc_dropout_scores, seg_net
    dev = get_device(args.device)
    vols = list(_volumes(args.masks + 1, args.depth, args.size))
    if kind == 'segae':
        est = QualityEstimator(SegAE(512, 'resnet50', args.width), TextEmbeddings(), (-200., 200.), args.img_size, args.device)
        est.model.to(dev)
        score = lambda img, m: segae_score(img, m, 'liver', est)
    elif args.seg == 'unet2d':
        net = seg_net(2, args.base).to(dev)
        score = lambda img, m: mc_dropout_scores(net, img, [1], args.passes, device=args.device)[1]
    else:
        from monai.networks.nets import UNet
        from medsegpaper.models import UNET3D_KW
        net = UNet(spatial_dims=3, in_channels=1, out_channels=2, dropout=0.1, **UNET3D_KW).to(dev)
        @torch.no_grad()
        def score(img, m):
            net.train()  # dropout active; BatchNorm too, which only changes values, not cost
            x = torch.from_numpy(img)[None, None].to(dev)
            return mean_pairwise_dice([(net(x).argmax(1)[0] == 1).cpu().numpy() for _ in range(args.passes)])
    if dev.type == 'cuda': torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
    else: base = _rss_mb()
    times = []
    for i, (img, m) in enumerate(vols):
        t = time.perf_counter(); score(img, m)
        if dev.type == 'cuda': torch.cuda.synchronize()
        if i: times.append(time.perf_counter() - t)  # the first mask warms up
    peak = ((torch.cuda.max_memory_allocated() - base) / 2**20 if dev.type == 'cuda'
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base)
    q.put((statistics.median(times), peak))

def run(kind, args):
    q = mp.get_context('spawn').Queue()
    p = mp.get_context('spawn').Process(target=_arm, args=(kind, args, q)); p.start()
    out = q.get(); p.join()
    return out

def main(argv=None):
    a = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    a.add_argument('--device', default='cpu'); a.add_argument('--depth', type=int, default=48); a.add_argument('--size', type=int, default=160)
    a.add_argument('--masks', type=int, default=3); a.add_argument('--passes', type=int, default=10)
    a.add_argument('--seg', default='unet3d', choices=('unet3d', 'unet2d')); a.add_argument('--base', type=int, default=16)
    a.add_argument('--width', type=float, default=1.); a.add_argument('--img-size', type=int, default=256)
    args = a.parse_args(argv)
    seg_t, seg_m = run('segae', args)
    mc_t, mc_m = run('mc', args)
    print(f'volumes {args.depth}x{args.size}x{args.size}, {args.masks} masks, device {args.device}; SegAE ResNet50 width {args.width} '
          f'at {args.img_size}px; MC dropout {args.seg}, T={args.passes}')
    print(f'SegAE:      {seg_t:8.3f} s/mask, peak memory {seg_m:9.1f} MiB')
    print(f'MC dropout: {mc_t:8.3f} s/mask, peak memory {mc_m:9.1f} MiB')
    print(f'MC dropout / SegAE: time {mc_t / seg_t:.1f}x, memory {mc_m / max(seg_m, 1e-6):.1f}x')

if __name__ == '__main__': main()
