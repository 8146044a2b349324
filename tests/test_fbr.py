"Study 003 (context vs foreground ratio): data generator, sampler, sliding window, end-to-end papermill runs."
import json
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch
from medsegpaper.studies.fbr003 import (PatchSampler, fbr_run, fbr_volumes, radius_range, record_context_vs_fbr,
                                        sliding_window_logits, synthetic3d_folder, volume_metrics, write_synthetic3d, RUN_KEYS)
from medsegpaper.studies.fbr003_analysis import CONFIG_KEYS, mark_within, within_outside
from medsegpaper.results import run_id
from medsegpaper.datasets import Volume, load_3d, write_msd_sample
from medsegpaper.io import read_nifti

REPO = Path(__file__).resolve().parents[1]
NB = REPO/"nbs"/"context_vs_fbr.ipynb"


@pytest.fixture(scope='module')
def spheres(tmp_path_factory):
    folder = tmp_path_factory.mktemp('spheres')/'set'
    write_synthetic3d(folder, volume_size=40, n_train=30, n_val=10, n_test=40, seed=3)
    return folder, json.loads((folder/'dataset.json').read_text())


@pytest.mark.parametrize('part,split', [('training', 'train'), ('test', 'test')])
def test_generator_radii_cover_range_and_spheres_inside(spheres, part, split):
    folder, meta = spheres
    lo, hi = radius_range(split, 40)
    radii = [e['radius'] for e in meta[part]]
    assert min(radii) >= lo and max(radii) <= hi
    assert max(radii) - min(radii) >= (hi - lo) // 2  # spread over the range, not a constant
    for e in meta[part][:8]:
        label = read_nifti(folder/e['label'])[0]
        zz, yy, xx = np.nonzero(label)
        for axis, c in zip((zz, yy, xx), e['centre']):
            assert (axis.min(), axis.max()) == (c - e['radius'], c + e['radius'])
            assert 0 <= axis.min() and axis.max() < 40


def test_generator_label_and_intensity_rule(spheres):
    folder, meta = spheres
    for e in meta['test'][:8]:
        image, affine = read_nifti(folder/e['image'])
        label = read_nifti(folder/e['label'])[0]
        np.testing.assert_array_equal(affine, np.eye(4))
        grid = np.indices(label.shape) - np.array(e['centre'])[:, None, None, None]
        np.testing.assert_array_equal(label, ((grid ** 2).sum(0) <= e['radius'] ** 2).astype(label.dtype))
        assert image.dtype == np.float32 and image.min() == 0 and image.max() == 1
        assert (image[label == 1] == 1).all()
        assert 0.4 < image[label == 0].mean() < 0.6


def test_generator_is_seeded_and_test_stream_independent(tmp_path):
    a = load_3d('synthetic3d', 'train', tmp_path, volume_size=24, n_train=2, n_val=1, n_test=2, seed=5)
    b = load_3d('synthetic3d', 'train', tmp_path, volume_size=24, n_train=2, n_val=1, n_test=5, seed=5)
    c = load_3d('synthetic3d', 'train', tmp_path, volume_size=24, n_train=2, n_val=1, n_test=2, seed=6)
    np.testing.assert_array_equal(a[0].image, b[0].image)
    assert not np.array_equal(a[0].image, c[0].image)
    assert (synthetic3d_folder(tmp_path, 24, 2, 1, 2, 5)/'dataset.json').exists()


@pytest.mark.parametrize('pos,neg', [(1, 1), (1, 3)])
def test_sampler_foreground_probability(pos, neg):
    label = np.zeros((48, 48, 48), np.int64); label[22:26, 22:26, 22:26] = 1
    vol = Volume(np.ones((1, 48, 48, 48), np.float32), label, (1, 1, 1), 'blob')  # an all-zero image has no background centres
    sampler = PatchSampler(8, num_samples=4, pos=pos, neg=neg, seed=1)
    for _ in range(300): sampler(vol)
    assert len(sampler.drawn) == 1200
    has_fg = np.mean([d['fg_ratio'] > 0 for d in sampler.drawn])
    assert abs(has_fg - pos / (pos + neg)) < 0.05


def test_sliding_window_identity_reconstructs_volume():
    x = torch.rand(2, 37, 29, 50)
    out = sliding_window_logits(torch.nn.Identity(), x, 16)
    assert out.shape == (1, 2, 37, 29, 50)
    torch.testing.assert_close(out[0], x, atol=1e-5, rtol=0)


def test_volume_metrics_match_medpy():
    from medpy.metric.binary import dc, hd
    rng = np.random.default_rng(0)
    gt = np.zeros((24, 24, 24), np.int64); gt[4:15, 6:18, 5:12] = 1
    pred = gt.copy(); pred[rng.random(gt.shape) < 0.02] ^= 1
    m = volume_metrics(pred, gt)
    assert m['dsc'] == pytest.approx(dc(pred, gt))
    assert m['hausdorff'] == pytest.approx(hd(pred, gt))
    assert m['abs_diff'] == pytest.approx(np.abs(pred - gt).sum() / gt.sum())
    no_gt = volume_metrics(pred, np.zeros_like(gt))
    assert no_gt['dsc'] == 0 and np.isnan(no_gt['abs_diff']) and np.isnan(no_gt['hausdorff'])


def _run_rows(patch_fg, test_fg, **params):
    params = {**dict(dataset='synthetic', model='unet', patch_size=32, epochs=20, lr=1e-3, volume_size=32, n_train=8, n_val=2,
                     n_test=len(test_fg), image_threshold=0., run=1, seed=0), **params}
    rid = run_id({k: params[k] for k in RUN_KEYS})
    tests = pd.DataFrame([{**params, 'run_id': rid, 'filename': f'sphere_{i:03d}', 'fg_ratio': f, 'dsc': .5, 'hausdorff': 3.}
                          for i, f in enumerate(test_fg)])
    patches = pd.DataFrame({'run_id': rid, 'dataset': params['dataset'], 'model': params['model'],
                            'patch_size': params['patch_size'], 'run': params['run'], 'draw': range(len(patch_fg)), 'fg_ratio': patch_fg})
    return tests, patches


def test_training_range_pools_runs_of_one_configuration_only():
    runs = [_run_rows([.1, .3], [.2, .35, .5]), _run_rows([.05, .4], [.2, .35, .5], run=2, seed=1),  # repeats: range [.05, .4]
            _run_rows([.25, .3], [.2, .35, .5], lr=1e-4),  # another learning rate: its own range [.25, .3]
            _run_rows([.0, .6], [.2, .35, .5], epochs=50)]  # more epochs: [0, .6]
    tests, patches = (pd.concat([r[k] for r in runs], ignore_index=True) for k in (0, 1))
    marked = mark_within(tests, patches)
    assert marked.within.tolist() == [True, True, False] * 2 + [False, False, False] + [True, True, True]
    assert marked[['fg_min', 'fg_max']].drop_duplicates().values.tolist() == [[.05, .4], [.25, .3], [0., .6]]
    table = within_outside(tests, patches)
    assert len(table) == 4 and table.dsc_count.sum() == len(tests)
    assert table.groupby(list(CONFIG_KEYS), dropna=False).ngroups == 3


def test_protocol_yamls_plan_valid_runs():
    from medsegpaper.sweep import load_protocol, plan_runs
    for name, n in (('fbr_cpu', 18), ('fbr_full', 45)):
        p = load_protocol(REPO/'nbs'/'protocols'/f'{name}.yaml')
        assert p.notebook == NB and list(p.tables) == ['results', 'patches_results']
        runs = plan_runs(p)
        assert len(runs) == n and not [r.error for r in runs if r.error]
        assert {r.params['model'] for r in runs} == {'unet', 'attention_unet', 'unetr'}
        assert all(r.params['patch_size'] % 16 == 0 and r.params['patch_size'] <= r.params['volume_size'] for r in runs)


def test_sweep_runs_one_run_and_skips_it_after(tmp_path, monkeypatch):
    from medsegpaper.sweep import run_sweep
    monkeypatch.chdir(REPO)
    res, pat = tmp_path/'r.csv', tmp_path/'p.csv'
    params = dict(patch_size=32, volume_size=32, epochs=1, n_train=2, n_val=1, n_test=3, run=2, seed=4, data_dir=str(tmp_path/'data'))
    proto = tmp_path/'proto.yaml'
    proto.write_text(json.dumps({'notebook': 'nbs/context_vs_fbr.ipynb', 'out': str(tmp_path/'runs'), 'parameters': params,
                                 'results': {'results': {'path': str(res), 'key': ['run_id', 'filename']},
                                             'patches_results': {'path': str(pat), 'key': ['run_id', 'draw']}},
                                 'grid': {'model': ['unet']}}))
    status = run_sweep(proto, workers=1, progress=False)
    assert [s['state'] for s in status] == ['done']
    rows = pd.read_csv(res)
    assert len(rows) == 3 and rows.run_id.unique().tolist() == [status[0]['run_id']]
    assert rows.run_id[0] == fbr_run({**params, 'dataset': 'synthetic', 'model': 'unet', 'lr': 1e-4, 'image_threshold': 0.}).run_id
    assert rows.filename.tolist() == ['sphere_000', 'sphere_001', 'sphere_002']
    assert (rows[['model', 'patch_size', 'volume_size', 'run', 'seed']].iloc[0].tolist() == ['unet', 32, 32, 2, 4])
    assert rows[['dsc', 'abs_diff', 'fg_ratio', 'valid_dice']].notna().all().all() and rows.dsc.between(0, 1).all()
    assert (rows.best_epoch == 0).all()  # one epoch: validated once, at its end
    patches = pd.read_csv(pat)
    assert len(patches) == 2 * 4 and (patches.run_id == rows.run_id[0]).all()
    assert patches.fg_ratio.between(0, 1).all() and (patches.patch_size == 32).all()
    again = run_sweep(proto, workers=1, progress=False)  # already done: skipped, nothing started
    assert [(s['state'], s['attempts']) for s in again] == [('done', 1)] and len(pd.read_csv(res)) == 3


def test_papermill_bad_model_fails_listing_choices(tmp_path, monkeypatch):
    import papermill as pm
    monkeypatch.chdir(REPO)
    with pytest.raises(pm.PapermillExecutionError, match='valid choices: unet, attention_unet, unetr'):
        pm.execute_notebook(str(NB), str(tmp_path/'out.ipynb'), parameters=dict(model='vnet', results=str(tmp_path/'r.csv')),
                            progress_bar=False)
    assert not (tmp_path/'r.csv').exists()


def test_spleen_run_on_msd_sample(tmp_path):
    write_msd_sample(tmp_path)
    res, pat = tmp_path/'r.csv', tmp_path/'p.csv'
    params = dict(dataset='spleen', model='unet', patch_size=16, epochs=1, lr=1e-4, volume_size=96, n_train=2, n_val=1, n_test=3,
                  image_threshold=0., run=1, seed=0)
    out = record_context_vs_fbr(fbr_run({**params, 'data_dir': str(tmp_path)}), res, pat, 'cpu')
    tests = fbr_volumes('spleen', 'test', tmp_path, n_test=3)
    rows = pd.read_csv(res)
    assert rows.filename.tolist() == [v.name for v in tests] == ['spleen_38', 'spleen_39', 'spleen_4']  # sorted by path; test = after the first 26 + 5
    np.testing.assert_allclose(rows.fg_ratio, [v.label.mean() for v in tests])
    assert all(v.spacing == (2., 1.5, 1.5) and 0 <= v.image.min() and v.image.max() <= 1 for v in tests)
    assert len(pd.read_csv(pat)) == 2 * 4 and (rows.run_id == out['run_id']).all()


@pytest.mark.parametrize('params', [dict(results='{tmp}/mine.csv'), dict(figures='{tmp}/figures')])
def test_analysis_stops_on_results_it_was_given_but_cannot_find(tmp_path, params):
    "A results file passed but absent, or a figure asked for without results: an error naming the files and the parameters, no demonstration run."
    import papermill as pm
    params = {k: v.format(tmp=tmp_path) for k, v in params.items()}
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(REPO/'nbs'/'context_vs_fbr_analysis.ipynb'), str(tmp_path/'out.ipynb'), parameters=params,
                            cwd=str(tmp_path), progress_bar=False)
    message = str(e.value)
    assert 'not found (parameters `results`, `patches_results`)' in message and 'fbr_cpu.yaml' in message, message
    assert ('mine.csv' in message) if 'results' in params else ('never from a demonstration run' in message)
    assert not (tmp_path/'figures').exists()
