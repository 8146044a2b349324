"Study 004 (SegAE): item rules, the loss, empty masks, the study's embedding table, the batch command, the notebook end to end."
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch
from medsegpaper.losses import dice_band_weights, optimal_pairs, pair_ranking_loss, weighted_mse
from medsegpaper.datasets.segae_data import write_totalsegmentator_sample, write_segae_sample, segae_cases, read_segae_case
from medsegpaper.studies.segae004 import (SegAE, QualityEstimator, TextEmbeddings, crop_margins, crop_square, load_text_embeddings,
                                          overlap_slices, score_slices, segae_score, train_margin)
from medsegpaper.studies.segae004_pipeline import layout_items, segae_cli

REPO = Path(__file__).resolve().parents[1]
NB = REPO/'nbs'/'segae.ipynb'


def test_slice_selection_on_hand_made_masks():
    truth = np.zeros((5, 30, 30), bool); truth[:, 5:15, 5:15] = True
    pred = truth.copy()
    pred[1, :, :] = False                                  # no overlap
    pred[3] = False; pred[3, 5:7, 5:15] = True             # 20 pixels: exactly the threshold
    pred[4] = False; pred[4, 5:6, 5:24] = True             # 10 pixels of overlap
    assert overlap_slices(pred, truth).tolist() == [0, 2, 3]
    assert overlap_slices(pred[3:], truth[3:]).tolist() == []        # one qualifying slice: the item is skipped
    assert overlap_slices(pred, truth, min_overlap=101).tolist() == []


def test_crop_rules_on_hand_made_masks():
    m = np.zeros((600, 600), bool); m[250:290, 250:260] = True     # extent 40 x 10
    assert crop_margins(m, 20) == (230, 310, 230, 280)
    rng = np.random.default_rng(1)
    for _ in range(50):
        y0, y1, x0, x1 = crop_margins(m, None, rng)
        my, mx = 250 - y0, 250 - x0
        assert 10 <= my <= (256 - 40) // 2 and 10 <= mx <= (256 - 10) // 2
        assert y1 - 290 == my and x1 - 260 == mx                   # the same margin on both sides of an axis
    assert train_margin(300, rng) == 10                             # larger than the input: the margin is 10
    edge = np.zeros((50, 50), bool); edge[0:5, 40:50] = True
    box = crop_margins(edge, 20)
    assert box == (0, 25, 20, 50)                                   # cut at the border
    c = crop_square(edge, box)
    assert c.shape == (30, 30) and c.sum() == 50                    # padded toward square, nothing lost


def test_ranking_pairing_known_optimum_and_loss():
    # three structures; items 0/3 and 1/4 share structures; 2 and 5 are near copies of each other
    e = torch.tensor([[1., 0, 0], [0, 1, 0], [0, 0, 1], [1, .1, 0], [.1, 1, 0], [0, .1, 1]])
    assert optimal_pairs(e).tolist() == [3, 4, 5, 0, 1, 2]
    t = torch.tensor([.9, .2, .5, .3, .8, .6])
    good = t * 2
    assert pair_ranking_loss(good, t, e) == 0
    bad = -t
    expected = np.mean([(a - b) ** 2 + 1e-4 for a, b in [(.9, .3), (.2, .8), (.5, .6)] * 2])
    assert pair_ranking_loss(bad, t, e).item() == pytest.approx(expected, rel=1e-5)


def test_loss_weights_by_band():
    t = torch.tensor([0., .25, .3, .35, .5, .55, .7, .75, .9, .91, 1.])
    assert dice_band_weights(t).tolist() == [7, 7, 7, 5, 5, 3, 3, 2, 2, 1, 1]
    assert weighted_mse(t + .1, t).item() == pytest.approx(np.mean([7, 7, 7, 5, 5, 3, 3, 2, 2, 1, 1]) * .01, rel=1e-5)


def tiny_estimator(structures=('liver',)):
    torch.manual_seed(0)
    return QualityEstimator(SegAE(512, 'resnet18', .125), TextEmbeddings(), (-200., 200.), 32)


def test_empty_mask_gives_nan_and_slices_evenly_spaced():
    est = tiny_estimator()
    img = np.zeros((8, 40, 40), np.float32)
    assert np.isnan(segae_score(img, np.zeros((8, 40, 40), bool), 'liver', est))
    m = np.zeros((8, 40, 40), bool); m[3, 10:20, 10:20] = True
    assert np.isfinite(segae_score(img, m, 'liver', est))
    assert score_slices(np.ones((30, 1, 1), bool)).tolist() == list(range(0, 30, 3))


def test_study_embedding_table_loads(reference):
    d = reference/'segae'
    te = load_text_embeddings(d/'label_embedding.pkl', d/'DAP_Atlas_label_name.csv')
    assert (len(te.vectors), te.dim, len(te.names)) == (145, 512, 145)
    assert te.names[2] == 'muscles' and te.names[144] == 'artery subclavian left'
    np.testing.assert_array_equal(te('muscles'), te(2))
    assert te(2).dtype == np.float32 and np.linalg.norm(te(2)) > 1                # CLIP embeddings as stored, not normalised
    with pytest.raises(KeyError, match='close names'): te('artery subclavian lft')


def test_items_from_study_layout_sample(tmp_path):
    d = write_segae_sample(tmp_path)
    cases = []
    for c in segae_cases(d, 'train'):
        img, lbl, sp, masks = read_segae_case(c)
        cases.append(dict(name=c.name, windowed=img, label=lbl, masks=masks))
    items = layout_items(cases, min_overlap=5)
    assert items and {i.class_id for i in items} <= {1, 2} and {i.checkpoint for i in items} <= {'step_-1', 'step_+0', 'step_+2'}


def test_batch_command_on_totalsegmentator_sample(tmp_path, capsys):
    ts = write_totalsegmentator_sample(tmp_path, n=3, size=40, depth=5)
    from medsegpaper.io import write_nifti
    write_nifti(ts/'s0001'/'segmentations'/'spleen.nii.gz', np.zeros((40, 40, 5), np.uint8), spacing=(1.5, 1.5, 1.5))
    model = tiny_estimator().save(tmp_path/'segae.pth')
    out = tmp_path/'scores.csv'
    assert segae_cli([str(ts), '--model', str(model), '--out', str(out)]) == 0
    assert '3 cases, 3 structures' in capsys.readouterr().out
    df = pd.read_csv(out)
    assert list(df.columns) == ['case', 'kidney_left', 'liver', 'spleen'] and df.case.tolist() == ['s0000', 's0001', 's0002']
    assert np.isnan(df.loc[1, 'spleen'])                               # the empty mask: NaN, not 0
    assert df.drop(columns='case').stack().notna().sum() >= 6
    segae_cli([str(ts), '--model', str(model), '--out', str(tmp_path/'liver.csv'), '--structures', 'liver'])
    assert list(pd.read_csv(tmp_path/'liver.csv').columns) == ['case', 'liver']


def test_batch_command_skips_a_broken_case_and_says_so(tmp_path, capsys):
    "A truncated CT: that case skipped with a warning naming it, the others scored, exit 1; a bad model file: one error line, nothing read."
    ts = write_totalsegmentator_sample(tmp_path, n=3, size=40, depth=5)
    ct = ts/'s0001'/'ct.nii.gz'; ct.write_bytes(ct.read_bytes()[:50])
    model, out = tiny_estimator().save(tmp_path/'segae.pth'), tmp_path/'scores.csv'
    assert segae_cli([str(ts), '--model', str(model), '--out', str(out)]) == 1
    captured = capsys.readouterr()
    assert '2 cases, 3 structures' in captured.out and '1 skipped' in captured.out
    assert f'warning: {ct}: case s0001 skipped' in captured.err, captured.err
    assert pd.read_csv(out).case.tolist() == ['s0000', 's0002']
    (tmp_path/'bad.pth').write_bytes(b'not a model')
    assert segae_cli([str(ts), '--model', str(tmp_path/'bad.pth'), '--out', str(tmp_path/'x.csv')]) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'not a SegAE model' in err and err.count('\n') == 1, err
    assert segae_cli([str(ts), '--model', str(model), '--out', str(tmp_path)]) == 1  # --out a folder: an error, no temp file left
    assert 'error: ' in capsys.readouterr().err and not list(tmp_path.parent.glob(f'.{tmp_path.name}.*.tmp'))


def test_batch_command_warns_about_structures_the_model_never_saw(tmp_path, capsys):
    "A model trained on the liver alone scores kidney and spleen with a warning for each, once; the record survives save and load."
    from dataclasses import replace
    ts = write_totalsegmentator_sample(tmp_path, n=2, size=40, depth=5)
    model = replace(tiny_estimator(), trained_on=('liver',)).save(tmp_path/'segae.pth')
    assert QualityEstimator.load(model).trained_on == ('liver',)
    assert segae_cli([str(ts), '--model', str(model), '--out', str(tmp_path/'s.csv')]) == 0
    warned = [l for l in capsys.readouterr().err.splitlines() if l.startswith('warning: ')]
    assert warned == [f"warning: SegAE was not trained on {s!r} (trained on: liver): its scores of it are extrapolated" for s in ('kidney_left', 'spleen')]


def test_notebook_writes_its_rows(tmp_path, monkeypatch):
    import papermill as pm
    monkeypatch.chdir(REPO)
    res, masks = tmp_path/'segae_scores.csv', tmp_path/'segae_masks.csv'
    params = dict(size=32, n_slabs=10, ladder=[1, 2], seg_base=4, width=0.0625, img_size=32, epochs=1, mc_passes=2, degrade_steps=1,
                  min_overlap=5, batch_size=64, work_dir=str(tmp_path/'work'), results=str(res), masks_results=str(masks))
    pm.execute_notebook(str(NB), str(tmp_path/'out.ipynb'), parameters=params, progress_bar=False)
    df = pd.read_csv(res)
    assert df.run_id.nunique() == 1
    assert set(zip(df.method, df.evaluation)) == {('segae', 'masks_3d'), ('mc_dropout', 'masks_3d'), ('trivial', 'masks_3d'),
                                                  ('segae', 'items_2d'), ('trivial', 'items_2d'), ('segae', 'erosion'), ('segae', 'dilation')}
    assert (df.text_encoder == 'hashing-3gram-512').all() and (df.width == 0.0625).all()
    seg = df[(df.method == 'segae') & (df.evaluation == 'masks_3d')].iloc[0]
    assert 1 <= seg.n <= 16 and np.isfinite(seg.mae)                    # of 2 test slabs x 4 structures x 2 checkpoints, the non-empty masks
    m = pd.read_csv(masks)
    assert len(m) == 16 and m.case.nunique() == 2 and m.true_dice.between(0, 1).all() and m.mc_dropout.notna().any()


def test_run_on_the_study_layout_sample(tmp_path):
    "dataset='segae': the study's layout read from data_dir, CT window, no MC dropout (no segmentation model comes with it)."
    from medsegpaper.studies.segae004_pipeline import run_segae
    write_segae_sample(tmp_path, n={'train': 2, 'val': 1, 'test': 1}, size=40)
    p = dict(dataset='segae', data_dir=str(tmp_path), size=64, ladder=[1], seg_base=4, seg_dropout=0.1, backbone='resnet18', width=0.125,
             img_size=32, weights='', text_table='', names_csv='', epochs=1, batch_size=8, lr=1e-3, weight_decay=1e-4, min_overlap=5,
             mc_passes=2, degrade_steps=1, seed=0, device='cpu', work_dir=str(tmp_path/'work'))
    out = run_segae(p, tmp_path/'run')
    rows = {(r['method'], r['evaluation']): r for r in out['rows']}
    assert rows[('segae', 'masks_3d')]['n'] == 6 and rows[('mc_dropout', 'masks_3d')]['n'] == 0   # 2 structures x 3 masks
    assert out['estimator'].window == (-200., 200.) and (tmp_path/'run'/'segae.pth').exists()
    assert set(out['masks'].structure) == {'liver', 'spleen'}
