"Study 002 (artery/vein GAN with binary-to-multi fusion): network shapes, the GAN step's order, label-safe rotation, the study's metrics, the segment measure, the papermill notebook and the protocols."
import json
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch
from medsegpaper.datasets import load_2d, write_av_sample
from medsegpaper.studies.av002 import AVGAN, AVUNet, discriminate, n_outputs, network_groups, probabilities
from medsegpaper.studies.av002_train import (AV_SIZES, AVGANStep, augment_av, av_dataloaders, av_learner, av_plan, fit_av,
                                             input_size, normalise_image, predict_av)
from medsegpaper.studies.av002_metrics import av_image_metrics, class_row, published_table, segment_measures

REPO = Path(__file__).resolve().parents[1]
NB = REPO/'nbs'/'av_segmentation.ipynb'


@pytest.mark.parametrize('dataset', list(AV_SIZES))
@pytest.mark.parametrize('activation,fusion', [('sigmoid', True), ('softmax', True), ('sigmoid', False)])
def test_every_network_keeps_the_datasets_input_size(dataset, activation, fusion):
    w, h = input_size(dataset)
    x = torch.randn(1, 3, h, w)
    m = AVGAN(activation, fusion, base=2).eval()  # shapes do not depend on the width; base 32 below
    with torch.no_grad():
        out, sides = m(x)
        assert out.shape == (1, n_outputs(activation), h, w) and [s.shape for s in sides] == [out.shape] * 3
        assert discriminate(m.d, x, probabilities(out, activation)).shape == (1, 1, h, w)
        if fusion:
            for (logits, feats), d in zip(m.branches(x), (m.d_a, m.d_v)):
                assert logits.shape[-2:] == (h, w) and feats.shape == (1, 2, h, w)
                assert discriminate(d, x, probabilities(logits, activation)).shape == (1, 1, h, w)


def test_generator_widths_are_the_protocols():
    g = AVUNet()
    assert [b[0][0].out_channels for b in [g.inc, *g.downs]] == [32, 64, 128, 256, 512]
    assert [u.reduce[0].out_channels for u in g.ups] == [256, 128, 64, 32]
    assert [s.head.in_channels for s in g.sides] == [32, 32, 32]
    assert AVGAN('sigmoid').fuse.in_channels == 34 and AVGAN('softmax').fuse.in_channels == 32


def _snapshot(params): return [p.detach().clone() for p in params]


def test_one_step_updates_the_four_networks_in_the_protocols_order():
    ds = load_2d('fundus_synth', 'train', n=2, size=32)
    learn = av_learner(av_dataloaders(ds, ds, (32, 32), batch_size=2), 'sigmoid', True, base=4)
    groups, changed, state = network_groups(learn.model), [], {}
    state['before'] = {k: _snapshot(v) for k, v in groups.items()}

    def record(name):
        now = {k: _snapshot(v) for k, v in groups.items()}
        moved = [k for k in groups if any(not torch.equal(a, b) for a, b in zip(state['before'][k], now[k]))]
        changed.append((name, moved)); state['before'] = now

    step = learn.cbs.filter(lambda c: isinstance(c, AVGANStep))[0]
    orig = step.before_fit
    def before_fit():
        orig()
        for k, o in step.opts.items(): o.register_step_post_hook(lambda *_, k=k: record(k))
    step.before_fit = before_fit
    from fastai.callback.core import Callback
    class AfterG(Callback):
        order = 90
        def after_step(self): record('G')
    learn.add_cb(AfterG())
    fit_av(learn, 1)
    # one batch: the three discriminator updates (artery, vein, full pair), then G_A, G_V and G, each moving only its network
    assert changed == [('D', ['D']), ('D', ['D']), ('D', ['D']), ('G_A', ['G_A']), ('G_V', ['G_V']), ('G', ['G'])]


def test_rotation_never_interpolates_labels():
    lbl = torch.zeros(48, 48, dtype=torch.long)
    lbl[10:38, 20:26] = 3; lbl[22:26, 5:43] = 1          # 1 next to 3 and to 0: averages would give 2
    img = torch.rand(3, 48, 48)
    for seed in range(40):
        _, out = augment_av(img, lbl, torch.Generator().manual_seed(seed), 3)
        assert set(out.unique().tolist()) <= {0, 1, 3}
    lbl2 = torch.randint(0, 4, (32, 32))
    for seed in range(8):                               # 90 degrees: an exact permutation of pixels
        _, out = augment_av(torch.rand(3, 32, 32), lbl2, torch.Generator().manual_seed(seed), 90)
        assert any(torch.equal(out, torch.rot90(f, k, (0, 1))) for f in (lbl2, lbl2.flip(1)) for k in range(4))


def test_fov_normalisation_and_the_originals_variant():
    rng = np.random.default_rng(1)
    img = rng.uniform(.1, 1, (3, 30, 30)).astype(np.float32)
    fov = np.zeros((30, 30), bool); fov[5:25, 5:25] = True
    img[:, ~fov] = 0; img[0, 6, 6] = 0                   # one FOV pixel with R = 0: left out by the original's rule only
    n = normalise_image(img, fov)
    np.testing.assert_allclose(n[:, fov].mean(1), 0, atol=1e-5)
    inside = img[0] > 0
    o = normalise_image(img, fov, 'original')
    np.testing.assert_allclose(o[:, 7, 7], (img[:, 7, 7] - img[:, inside].mean(1)) * img[:, inside].std(1), rtol=1e-5)


def test_binarised_auc_roc_is_mean_of_sensitivity_and_specificity(reference):
    ds = load_2d('drive_av', 'test', reference/'retina_av', cache=False)
    rng = np.random.default_rng(0)
    for gt, fov in list(zip(ds.labels, ds.masks))[:3]:
        pred = np.where(rng.random(gt.shape) < .15, rng.integers(0, 4, gt.shape), gt) * fov
        for k in (1, 2, 3):
            r = class_row(pred, gt, fov, k)
            assert r['auc_roc_bin'] == pytest.approx((r['sens'] + r['spec']) / 2, abs=1e-12)
        m = av_image_metrics(pred, gt, fov)
        assert m['auc_roc_bin'] == pytest.approx((m['sens'] + m['spec']) / 2, abs=1e-12)
        perfect = av_image_metrics(gt, gt, fov)
        assert perfect['f1'] == 1 and perfect['mse'] == 0


def test_segment_measure_on_a_hand_made_crossing():
    gt = np.zeros((61, 61), int)
    gt[29:32, 2:59] = 1; gt[2:59, 29:32] = 2; gt[29:32, 29:32] = 3
    assert segment_measures(gt, gt) == dict(segments_mixed=0., n_segments=4, crossing_error=0.)
    flip = gt.copy(); flip[29:32, 8:20] = 2; flip[36:50, 29:32] = 1   # two of four segments flip part-way
    m = segment_measures(flip, gt)
    assert (m['n_segments'], m['segments_mixed']) == (4, .5)
    whole = gt.copy(); whole[29:32, 2:29] = 2                         # a whole segment in the wrong class: wrong, not mixed
    assert segment_measures(whole, gt)['segments_mixed'] == 0.


def test_published_tables():
    t = published_table()
    assert t.loc[('B', 'drive_av')].tolist() == [69.83, 84.20, 71.26, 72.41, 2.92]
    assert t.loc[('A', 'les_av'), 'sens'] == 64.41


def test_notebook_on_a_drive_av_sample_writes_its_row(tmp_path, monkeypatch):
    import papermill as pm
    monkeypatch.chdir(REPO)
    write_av_sample(tmp_path/'data', 'drive_av', n_train=4, n_test=2, size=40)
    res = tmp_path/'av.csv'
    params = dict(dataset='drive_av', activation='softmax', fusion=False, epochs=1, scale=0.06, base=4, eval_epochs=1, seed=3,
                  rotation_step=90, normalise='original', undefined='original', data_dir=str(tmp_path/'data'), results=str(res))
    pm.execute_notebook(str(NB), str(tmp_path/'out.ipynb'), parameters=params, progress_bar=False)
    rows = pd.read_csv(res)
    assert rows.image.tolist() == ['drive_av_01_test', 'drive_av_02_test'] and (rows.epoch == 0).all()
    assert rows[['activation', 'fusion', 'normalise', 'seed', 'base']].iloc[0].tolist() == ['softmax', False, 'original', 3, 4]
    expected = av_plan({k: v for k, v in params.items() if k != 'results'} | dict(lr=8e-4, batch_size=2, patience=50, synth_size=64))
    assert rows.run_id.unique().tolist() == [expected.run_id]
    assert rows[['sens', 'spec', 'f1', 'mse', 'auc_roc_bin', 'crossing_error']].notna().all().all()


def test_papermill_bad_activation_fails_listing_choices(tmp_path, monkeypatch):
    import papermill as pm
    monkeypatch.chdir(REPO)
    with pytest.raises(pm.PapermillExecutionError, match='sigmoid, softmax'):
        pm.execute_notebook(str(NB), str(tmp_path/'out.ipynb'), parameters=dict(activation='tanh', results=str(tmp_path/'r.csv')),
                            progress_bar=False)
    assert not (tmp_path/'r.csv').exists()


def test_protocols_plan_valid_runs(reference, monkeypatch):
    from medsegpaper.sweep import load_protocol, plan_runs
    monkeypatch.setenv('MEDSEGPAPER_DATA', str(reference/'retina_av'))
    cpu = plan_runs(load_protocol(REPO/'nbs'/'protocols'/'av002_cpu.yaml'))
    assert len(cpu) == 16 and not [r.error for r in cpu if r.error]
    assert {(r.params['dataset'], r.params['activation'], r.params['fusion']) for r in cpu} == {
        (d, a, f) for d in ('drive_av', 'les_av') for a in ('sigmoid', 'softmax') for f in (True, False)}
    full = load_protocol(REPO/'nbs'/'protocols'/'av002_full.yaml')
    assert full.notebook == NB and full.parameters['epochs'] == 1500 and full.grid['dataset'] == ['drive_av', 'les_av', 'hrf_av']
