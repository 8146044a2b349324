"""Does study 001's CPU reduction learn fluid? One protocol row beside an ordinary U-Net given the same CPU time.

The row (default: the published best, crop 320 + SGD wd 1e-4) is planned from the protocol as a sweep
would plan it and run by `oct_ablation`: vessel start (built once under the protocol's `vessel_dir`,
reused after), fine-tuning, sliding-window test on the study's 22 validation frames. The baseline is
what any researcher would try first: study 000's U-Net (4 levels, 16 base channels, BatchNorm), cross-
entropy, Adam lr 1e-3, batch 4, whole frames at the row's scale, no crop, stopped when it has used the
row's training CPU time, scored on whole frames. Printed: both rows' validation mDice, fluid Dice and
empty predictions, their CPU seconds, and the row's mDice over the baseline's (a reduction that learns
is near 1; one that learns no fluid sits at 0.498 / baseline). No timed assertion.

    MEDSEGPAPER_DATA=<root holding oct_dme/ and DRIVE_AV/> python bench/oct001_learns.py [--protocol P] [--row LABEL]
"""
import argparse, json, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def protocol_row(protocol: Path, label: str, seed: int):
    "The checked `Run` of `protocol` whose ablation label is `label` (and seed `seed`), as its notebook would plan it."
    from medsegpaper.experiment import notebook_experiment
    from medsegpaper.sweep import load_protocol, plan_runs
    from medsegpaper.studies.oct001_ablation import ablation_label
    proto = load_protocol(protocol)
    runs = [r for r in plan_runs(proto) if ablation_label(r.params) == label and r.params['seed'] == seed]
    if not runs: raise SystemExit(f"{protocol}: no run labelled {label!r} with seed {seed}")
    if runs[0].error: raise SystemExit(f"{protocol}: {label}: {runs[0].error}")
    return notebook_experiment(proto.notebook).plan(runs[0].params)


def baseline(train, valid, size, cpu_seconds: float, seed: int) -> dict:
    "An ordinary U-Net trained with Adam for `cpu_seconds` of this process's CPU time; scores on whole frames."
    import torch
    from fastai.callback.core import Callback, CancelFitException
    from medsegpaper.models import unet
    from medsegpaper.studies.oct001 import oct_predict, oct_scores, train_oct

    class CPUBudget(Callback):
        def before_fit(self): self.start = time.process_time()
        def after_batch(self):
            if time.process_time() - self.start > cpu_seconds: raise CancelFitException

    torch.manual_seed(seed)
    model, c0 = unet(3, 2, base=16, depth=4), time.process_time()
    learn = train_oct(model, train, size, 100_000, 4, 0, False, 'ce', 'adam', 1e-3, 0., horizon=10**9, seed=seed, cbs=[CPUBudget()])
    cpu = time.process_time() - c0
    scores = oct_scores(oct_predict(model, valid.images, size, max(size), max(size)), valid.labels)
    return {**scores, 'train_cpu_s': cpu, 'iterations': learn.train_iter}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--protocol', type=Path, default=REPO/'nbs'/'protocols'/'oct001_cpu.yaml')
    ap.add_argument('--row', default='crop 320 + SGD wd 1e-4 (best)', help="the row's ablation label (OCT_PUBLISHED.ablation)")
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    import torch
    from medsegpaper.studies.oct001 import oct_size
    from medsegpaper.studies.oct001_ablation import oct_ablation
    torch.set_num_threads(a.threads)
    run = protocol_row(a.protocol, a.row, a.seed)
    c0 = time.process_time()
    out = oct_ablation(run)
    row_cpu = time.process_time() - c0  # vessel start (when built here), training and test
    train_cpu = row_cpu * out['info']['train_s'] / (out['info']['train_s'] + out['info']['test_s'] + out['info']['vessel_s'])
    size = oct_size(out['valid'], (4 * run.params['scale'], run.params['scale']))
    base = baseline(run.load('train'), out['valid'], size, train_cpu, a.seed)
    keys = ('mDice', 'Dice_fluid', 'IoU_fluid', 'n_empty_preds')
    print(json.dumps({'row': a.row, 'iters': out['info']['iters_trained'], 'train_cpu_s': round(train_cpu),
                      'vessel_dice': out['info'].get('vessel_dice'), **{k: round(out['scores'][k], 4) for k in keys}}))
    print(json.dumps({'row': 'U-Net 16, CE, Adam 1e-3, batch 4, whole frames', 'iters': base['iterations'],
                      'train_cpu_s': round(base['train_cpu_s']), **{k: round(base[k], 4) for k in keys}}))
    print(f"mDice ratio, row / baseline at equal training CPU time: {out['scores']['mDice'] / base['mDice']:.3f}")


if __name__ == '__main__': main()
