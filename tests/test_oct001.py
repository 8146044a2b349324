"Study 001 (OCT fluid): MMSegmentation's networks, the pipeline's crop rule, sliding windows, MMSeg scores, the vessel start, the ablation notebook and protocols."
import numpy as np
import pandas as pd
import papermill as pm
import pytest
import torch
from pathlib import Path

import medsegpaper.datasets.embedded_oct  # registers oct_synth
from medsegpaper.datasets import load_2d
from medsegpaper.experiment import ParameterError, notebook_experiment
from medsegpaper.models import get_model
from medsegpaper.models_mmseg import MMSEG_HEADS, mmseg_unet_param_count
from medsegpaper.studies.oct001 import oct_augment, oct_scores, oct_size, slide_logits
from medsegpaper.transforms import SegAugment
from medsegpaper.studies.oct001_ablation import OCT_PUBLISHED, ablation_label, oct_findings, record_oct_ablation, side_by_side, vessel_maps

REPO = Path(__file__).resolve().parents[1]
NB = REPO/'nbs'/'oct_ablation.ipynb'
TINY = dict(dataset_opts={'size': 48}, width=0.0625, iters=3, scale=48, slide_crop=32, slide_stride=20,
            vessel_iters=2, vessel_scale=32, vessel_crop=24)


@pytest.mark.parametrize('head', list(MMSEG_HEADS))
@pytest.mark.parametrize('hw', [(50, 70), (33, 97), (100, 36)])
def test_heads_give_input_sized_logits_for_sizes_not_divisible_by_32(head, hw):
    torch.manual_seed(0)
    m = get_model(f'unet_s5d16_{head}', 3, 2, width=0.0625)
    out, aux = m.train()(torch.rand(2, 3, *hw))
    assert out.shape == aux.shape == (2, 2, *hw)
    assert m.eval()(torch.rand(1, 3, *hw)).shape == (1, 2, *hw)


def test_full_width_parameter_counts_follow_the_configs():
    counts = {h: sum(p.numel() for p in get_model(f'unet_s5d16_{h}', 3, 2).parameters()) for h in MMSEG_HEADS}
    assert counts == {h: mmseg_unet_param_count(h) for h in MMSEG_HEADS} == {'fcn': 29_060_676, 'psp': 29_046_276, 'aspp': 29_064_996}


def _max_class_fraction(lbl): return torch.bincount(lbl.flatten(), minlength=2).max().item() / lbl.numel()


def test_crop_redraws_while_one_class_covers_75_percent():
    img, lbl = torch.zeros(3, 80, 80), torch.zeros(80, 80, dtype=torch.int64)
    lbl[50:70, 5:35] = 1  # 600 fluid pixels: a 40x40 window can hold 37 % fluid
    def crops(tfm): return [tfm(img, lbl, torch.Generator().manual_seed(s))[1] for s in range(300)]
    free = crops(SegAugment(80, 40, normalize='imagenet'))  # the same crop without the rule
    ruled = crops(oct_augment((80, 80), 40))
    p_free = np.mean([_max_class_fraction(c) < 0.75 for c in free])
    p_ruled = np.mean([_max_class_fraction(c) < 0.75 for c in ruled])
    assert p_free < 0.35 and p_ruled == pytest.approx(1 - (1 - p_free) ** 10, abs=0.08)
    assert all(c.shape == (40, 40) for c in ruled)


def test_the_rule_gives_up_after_ten_draws_on_a_frame_without_fluid():
    tfm = oct_augment((40, 40), 16)
    x, y = tfm(torch.rand(3, 40, 40), torch.zeros(40, 40, dtype=torch.int64), torch.Generator().manual_seed(0))
    assert x.shape == (3, 16, 16) and y.sum() == 0


@pytest.mark.parametrize('crop,stride', [(256, 170), (32, 21), (40, 40), (64, 7)])
def test_sliding_windows_equal_the_whole_image_for_a_pointwise_model(crop, stride):
    torch.manual_seed(0)
    pointwise = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))
    x = torch.randn(2, 3, 97, 130)
    torch.testing.assert_close(slide_logits(pointwise, x, crop, stride), pointwise(x), atol=1e-5, rtol=1e-5)


def test_mmseg_miou_on_a_hand_computed_case():
    # frame 1: truth fluid in 3 pixels, prediction in 2 of them + 1 more; frame 2: no fluid, prediction marks 2
    labels = [np.array([[1, 1, 1], [0, 0, 0]]), np.zeros((2, 3), int)]
    preds = [np.array([[1, 1, 0], [0, 0, 1]]), np.array([[1, 1, 0], [0, 0, 0]])]
    s = oct_scores(preds, labels)
    # fluid: I = 2, U = 3 + 5 - 2 = 6; background: truth 9, prediction 7, I = 2 + 4 = 6, U = 10
    assert s['IoU_fluid'] == pytest.approx(2 / 6) and s['IoU_background'] == pytest.approx(6 / 10)
    assert s['mIoU'] == pytest.approx((2 / 6 + 6 / 10) / 2)
    assert s['mDice'] == pytest.approx((4 / 8 + 12 / 16) / 2)
    assert s['fluid_IoU_per_image'] == pytest.approx((2 / 4 + 0) / 2)
    assert (s['n_empty_masks'], s['n_empty_preds']) == (1, 0)


def test_published_rows_are_named_and_findings_need_their_rows():
    assert ablation_label(dict(iters=400, crop=0, flip=True, loss='ce', optimizer='sgd', weight_decay=5e-4)) == '+ h-flip'
    row = dict(ablation='crop 192', seed=0, mDice=.7, mIoU=.6, IoU_fluid=.3, fluid_IoU_per_image=.3, n_empty_preds=11, n_images=22, end='x')
    assert oct_findings(pd.DataFrame([row])).holds.isna().all()


def test_bad_parameters_are_named_with_their_choices():
    with pytest.raises(ParameterError) as e:
        notebook_experiment(NB).plan({**TINY, 'loss': 'dyce', 'head': 'upernet', 'crop': -1})
    assert set(e.value.problems) == {'loss', 'head', 'crop'}
    assert 'ce, dice, focal' in str(e.value) and 'fcn, psp, aspp' in str(e.value)


def test_notebook_writes_its_row_and_the_baseline_reuses_the_vessel_checkpoint(tmp_path):
    res, ck = tmp_path/'oct.csv', tmp_path/'ck'
    params = dict(TINY, head='fcn', crop=32, flip=True, loss='dice', optimizer='adam', weight_decay=1e-4,
                  data_root=str(tmp_path/'data'), vessel_dir=str(ck), results=str(res))
    pm.execute_notebook(str(NB), str(tmp_path/'out.ipynb'), parameters=params, progress_bar=False)
    row = pd.read_csv(res).iloc[0]
    assert tuple(row[k] for k in ('dataset', 'head', 'crop', 'flip', 'loss', 'optimizer', 'weight_decay', 'iters')) == \
           ('oct_synth', 'fcn', 32, True, 'dice', 'adam', 1e-4, 3)
    assert row.n_images == 8 and 0 <= row.mIoU <= 1 and row.vessel_s > 0 and len(list(ck.glob('vessel_*.pth'))) == 1
    baseline = notebook_experiment(NB).plan({**params, 'finetune': False})
    out = record_oct_ablation(baseline, res)
    rows = pd.read_csv(res)
    assert len(rows) == 2 and out['row']['ablation'] == 'no fine-tuning'
    assert out['info']['vessel_s'] == 0 and out['info']['vessel_checkpoint'] == row.vessel_checkpoint
    assert out['info']['train_s'] < 0.01  # nothing trained


def test_protocols_plan_the_published_rows(tmp_path, monkeypatch):
    from medsegpaper.datasets import write_oct_dme_sample
    from medsegpaper.sweep import load_protocol, plan_runs
    write_oct_dme_sample(tmp_path, layout='png', n=2, height=32, width=32)
    monkeypatch.setenv('MEDSEGPAPER_DATA', str(tmp_path))
    published = set(OCT_PUBLISHED.ablation)
    for name, width, n, extra in (('oct001_cpu', 0.25, 40, {'crop 320 + SGD wd 1e-4 (best) from scratch'}), ('oct001_full', 1.0, 13, set())):
        runs = plan_runs(load_protocol(REPO/'nbs'/'protocols'/f'{name}.yaml'))
        assert len(runs) == n and not [r.error for r in runs if r.error]
        labels = [ablation_label(r.params) for r in runs]
        assert labels[0] == 'no fine-tuning' and labels.count('no fine-tuning') == 1 and set(labels[1:]) == published | extra
        assert {r.params['width'] for r in runs} == {width} and {r.params['batch_size'] for r in runs} == {2}
        seeds = {l: sorted(r.params['seed'] for r, m in zip(runs, labels) if m == l) for l in published | extra}
        assert set(map(tuple, seeds.values())) == ({(0, 1, 2)} if name == 'oct001_cpu' else {(0,)})
        assert len({r.params.get('vessel_seed', 0) for r in runs}) == 1  # one vessel start for every row and seed


def test_real_frames_resize_to_512_and_half_the_validation_masks_are_empty(reference, tmp_path):
    src = reference/'oct_dme_png'
    if not src.is_dir(): pytest.skip(f'{src} not found')
    (tmp_path/'oct_dme').symlink_to(src, target_is_directory=True)
    train, valid = (load_2d('oct_dme', s, tmp_path, channels=3) for s in ('train', 'valid'))
    assert (len(train), len(valid), oct_size(train)) == (88, 22, (512, 512))
    s = oct_scores([np.zeros_like(l) for l in valid.labels], valid.labels)  # all background
    assert (s['n_empty_masks'], s['n_empty_preds'], s['IoU_fluid']) == (11, 22, 0)
    assert 0.99 < s['IoU_background'] < 1 and s['mIoU'] == pytest.approx(s['IoU_background'] / 2)


def test_real_av_labels_become_vessel_maps(reference):
    ds = vessel_maps(load_2d('drive_av', 'train', reference/'retina_av', valid='test', size=(160, 128), cache=False))
    assert len(ds) == 20 and ds.classes == ['background', 'vessel']
    frac = np.mean([l.mean() for l in ds.labels])
    assert set(np.unique(np.stack(ds.labels))) == {0, 1} and 0.05 < frac < 0.2
