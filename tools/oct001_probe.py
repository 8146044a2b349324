"""Why a study 001 row learns no fluid: train the best row's pipeline (crop 320, batch 2, CE, weight decay 1e-4) once
and print the fluid share of the training pixels with the loss of always answering it, the training loss, and the
network's mean fluid probability on fluid and on background pixels of the training and validation frames, or the
validation scores (--scores).

    MEDSEGPAPER_DATA=<root with oct_dme/> python tools/oct001_probe.py --width 0.125 --start checkpoints/oct001/vessel_<key>.pth
"""
import argparse, time
import numpy as np
import torch
import torch.nn.functional as F
from medsegpaper.experiment import DataRef
from medsegpaper.transforms import normalize_image
from medsegpaper.studies.oct001 import oct_size, train_oct, slide_logits, oct_predict, oct_scores
from medsegpaper.studies.oct001_ablation import oct_model


@torch.no_grad()
def fluid_probability(model, ds, size) -> tuple[float, float]:
    "Mean over frames of the mean fluid probability on fluid pixels (frames with fluid) and on background pixels."
    on_fluid, on_background = [], []
    for im, lab in zip(ds.images, ds.labels):
        x = normalize_image(F.interpolate(torch.as_tensor(im)[None], size=size, mode='bilinear', align_corners=False), 'imagenet')
        p = F.interpolate(slide_logits(model, x), size=lab.shape, mode='bilinear', align_corners=False).softmax(1)[0, 1].numpy()
        if (lab == 1).any(): on_fluid.append(p[lab == 1].mean())
        on_background.append(p[lab == 0].mean())
    return float(np.mean(on_fluid)), float(np.mean(on_background))


def main():
    a = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    a.add_argument('--width', type=float, default=0.0625)
    a.add_argument('--start', default='', help="checkpoint to fine-tune from, new classifiers ('': random weights)")
    a.add_argument('--optimizer', default='sgd', choices=['sgd', 'adam'])
    a.add_argument('--lr', type=float, default=0.01)
    a.add_argument('--iters', type=int, default=400)
    a.add_argument('--threads', type=int, default=2)
    a.add_argument('--scores', action='store_true', help='score the validation frames as the study does instead')
    p = a.parse_args()
    torch.set_num_threads(p.threads)
    ref = DataRef('oct_dme', None, {'channels': 3})
    train, valid = ref.load('train'), ref.load('valid')
    size = oct_size(train, (2048, 512))
    f = float(np.mean([(lab == 1).mean() for lab in train.labels]))
    ce = -f * np.log(f) - (1 - f) * np.log(1 - f)
    print(f'fluid: {100 * f:.2f} % of the training pixels; always answering the training frequencies costs a cross-entropy of '
          f'{ce:.3f}, {1.4 * ce:.3f} with the auxiliary head (weight 0.4)')
    model = oct_model('psp', p.width, p.start or None, True, 0)
    t = time.perf_counter()
    losses = [float(l) for l in train_oct(model, train, size, p.iters, 2, 320, False, 'ce', p.optimizer, p.lr, 1e-4).recorder.losses]
    print(f'{vars(p)}: {time.perf_counter() - t:.0f} s, loss of the first / last 20 iterations {np.mean(losses[:20]):.3f} / {np.mean(losses[-20:]):.3f}')
    model.eval()
    if p.scores: print(oct_scores(oct_predict(model, valid.images, size), valid.labels))
    else:
        for name, ds in (('train', train), ('valid', valid)):
            print('{}: mean fluid probability on fluid pixels {:.3f}, on background {:.4f}'.format(name, *fluid_probability(model, ds, size)))


if __name__ == '__main__': main()
