"Readers run on their sample writers' output, on broken copies of it, and through the CLI."
import json, re, multiprocessing as mp

import numpy as np
import pytest

from medsegpaper import datasets as D
import medsegpaper.datasets.core as DC
from medsegpaper.io import DataError, cached, read_npy, write_nifti, write_mat
from medsegpaper.datasets import DATASETS, SPLITS, SegDataset2D, Volume, load_2d, load_3d, load_items

WITH_SAMPLE = sorted(n for n, s in DATASETS.items() if s.write_sample)


@pytest.fixture(scope='module')
def samples(tmp_path_factory):
    "One data root holding every dataset's sample."
    root = tmp_path_factory.mktemp('data')
    for name in WITH_SAMPLE: DATASETS[name].write_sample(root)
    return root


def assert_valid_2d(ds: SegDataset2D):
    assert len(ds) > 0 and len(set(ds.names)) == len(ds)
    for img, lbl in zip(ds.images, ds.labels):
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[1:] == lbl.shape
        assert lbl.dtype == np.int64 and 0 <= lbl.min() and lbl.max() < ds.n_classes
        assert np.isfinite(img).all()


def assert_valid_3d(vols, n_classes=None):
    assert len(vols) > 0
    for v in vols:
        assert isinstance(v, Volume) and v.image.dtype == np.float32 and v.label.dtype == np.int64
        assert v.image.shape[1:] == v.label.shape and len(v.spacing) == 3 and min(v.spacing) > 0
        if n_classes: assert v.label.max() < n_classes


@pytest.mark.parametrize('name', WITH_SAMPLE)
def test_reader_on_its_sample(samples, name):
    spec = DATASETS[name]
    for split in SPLITS:
        if spec.load_items:
            items = load_items(name, split, samples)
            assert items and all(p.is_file() and 0 <= c < 1000 for p, c in items)
            continue
        if spec.load_2d: assert_valid_2d(load_2d(name, split, samples))
        if spec.load_3d: assert_valid_3d(load_3d(name, split, samples))


@pytest.mark.parametrize('name', WITH_SAMPLE)
def test_train_and_test_do_not_overlap(samples, name):
    spec = DATASETS[name]
    if spec.load_items:
        tr, te = ({p for p, _ in load_items(name, s, samples)} for s in ('train', 'test'))
    else:
        tr, te = (set(load_2d(name, s, samples).names) for s in ('train', 'test'))
    assert tr and te and not tr & te


@pytest.mark.parametrize('name', [n for n in WITH_SAMPLE if n not in ('brain', 'synthetic2d')])
def test_missing_dataset_names_path_layout_and_source(tmp_path, name):
    with pytest.raises(FileNotFoundError) as e:
        D.check_dataset(name, tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and 'expected layout' in msg and 'download it from http' in msg


def test_unknown_names_list_valid_choices():
    with pytest.raises(ValueError, match='valid choices: brain, synthetic2d, synthetic3d, digits, acdc'): load_2d('nope', 'train')
    with pytest.raises(ValueError, match='valid choices: train, valid, test'): load_2d('brain', 'training')


# ---- embedded defaults ----

def test_brain_splits_are_disjoint_deterministic_and_cached():
    sets = {s: load_2d('brain', s, size=64) for s in SPLITS}
    names = [set(sets[s].names) for s in SPLITS]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert all(ds.classes == D.BRAIN_CLASSES for ds in sets.values())
    again = load_2d('brain', 'test', size=64)
    assert again.names == sets['test'].names and all((a == b).all() for a, b in zip(again.images, sets['test'].images))
    assert D.brain_slices.cache_info().hits > 0
    assert {0, 1, 2} <= set(np.unique(np.concatenate([l.ravel() for l in sets['train'].labels])))


def test_brain_labels_follow_the_documented_rule():
    t1, gm, wm, _ = D.brain_arrays()
    lbl = D.brain_labels(gm, wm)
    tissue = gm + wm >= 0.5
    assert ((lbl > 0) == tissue).all()
    assert ((lbl == 2) == (tissue & (wm > gm))).all()


def test_brain_3d_slabs_cover_the_2d_slices():
    vols = {s: load_3d('brain', s) for s in SPLITS}
    assert_valid_3d(sum(vols.values(), []), 3)
    assert sum(v.label.shape[0] for vs in vols.values() for v in vs) == sum(len(load_2d('brain', s)) for s in SPLITS)


@pytest.mark.parametrize('n_classes', [2, 3, 7])
def test_synthetic2d_classes_and_seeding(n_classes):
    a = load_2d('synthetic2d', 'train', n=8, size=32, n_classes=n_classes, seed=3)
    b = load_2d('synthetic2d', 'train', n=8, size=32, n_classes=n_classes, seed=3)
    c = load_2d('synthetic2d', 'valid', n=8, size=32, n_classes=n_classes, seed=3)
    assert_valid_2d(a)
    assert a.n_classes == n_classes and all((x == y).all() for x, y in zip(a.images, b.images))
    assert not all((x == y).all() for x, y in zip(a.images, c.images))


# ---- bad input: every error names the file and the problem ----

def _acdc_gt(root): return root/'ACDC/training/patient001/patient001_frame01_gt.nii.gz'


@pytest.mark.parametrize('damage, expected', [
    (lambda r: _acdc_gt(r).write_bytes(_acdc_gt(r).read_bytes()[:60]), 'unreadable NIfTI'),
    (lambda r: _acdc_gt(r).unlink(), 'missing partner file'),
    (lambda r: write_nifti(_acdc_gt(r), np.full((24, 24, 3), 9, np.uint8), spacing=(1.5, 1.5, 10)), 'label values [9] outside'),
    (lambda r: write_nifti(_acdc_gt(r), np.zeros((24, 24, 2), np.uint8), spacing=(1.5, 1.5, 10)), 'does not match image'),
    (lambda r: write_nifti(_acdc_gt(r), np.zeros((24, 24, 3), np.uint8), spacing=(1, 1, 10)), 'affine differs'),
])
def test_acdc_bad_input(tmp_path, damage, expected):
    D.write_acdc_sample(tmp_path, n_train=1, n_test=1)
    damage(tmp_path)
    with pytest.raises(DataError, match='patient001_frame01') as e: load_2d('acdc', 'train', tmp_path)
    assert expected in str(e.value)


def test_msd_bad_label_and_nan_image(tmp_path):
    d = D.write_msd_sample(tmp_path, n=4, n_test=0)
    write_nifti(d/'labelsTr/spleen_1.nii.gz', np.full((12, 12, 6), 2, np.uint8), spacing=(0.8, 0.8, 5))
    with pytest.raises(DataError, match=r'labelsTr/spleen_1.nii.gz: label values \[2\]'): load_3d('msd', 'train', tmp_path, n_train=2, n_valid=1)
    write_nifti(d/'imagesTr/spleen_2.nii.gz', np.full((12, 12, 6), np.nan, np.float32), spacing=(0.8, 0.8, 5))
    with pytest.raises(DataError, match=r'imagesTr/spleen_2.nii.gz: 864 NaN/inf'): load_3d('msd', 'valid', tmp_path, n_train=1, n_valid=1)


def test_covid_nan_images(tmp_path):
    d = D.write_covid_qu_sample(tmp_path, layout='npy')
    f = d/'Inf_segm/data_arrays/COVID-19/test/imgs.npy'
    np.save(f, np.full((3, 32, 32), np.nan, np.float32))
    with pytest.raises(DataError, match='imgs.npy: 3072 NaN/inf'): load_2d('covid_qu', 'test', tmp_path)


def test_av_colour_label_and_truncated_image(tmp_path):
    d = D.write_av_sample(tmp_path, 'drive_av')
    lbl = d/'test/1st_manual/01_test.png'
    from medsegpaper.io import read_image, write_image
    write_image(lbl, np.stack([read_image(lbl)] * 3, -1))
    with pytest.raises(DataError, match=r'01_test.png: label with 3 channels; expected one channel'): load_2d('drive_av', 'test', tmp_path)
    img = d/'training/images/21_training.tif'
    img.write_bytes(img.read_bytes()[:300])
    with pytest.raises(DataError, match='21_training.tif: '): load_2d('drive_av', 'train', tmp_path, valid='test')


def test_oct_v73_missing_variable_and_nan_handling(tmp_path):
    d = D.write_oct_dme_sample(tmp_path, n=2)
    imgs, lbls, frames = D.oct_frames(d/'Subject_02.mat')  # MATLAB v7.3
    assert list(frames) == list(range(1, 12)) and lbls[:, :2].max() == 0
    write_mat(d/'Subject_02.mat', {'images': np.zeros((4, 4, 2), np.uint8)}, v73=True)
    with pytest.raises(DataError, match=r"Subject_02.mat: missing variables \['manualFluid1'\]"): load_2d('oct_dme', 'train', tmp_path, n_valid=1)


def test_idrid_truncated_jpeg_and_wrong_mask_size(tmp_path):
    d = D.write_idrid_sample(tmp_path)
    sa = d/'Segmentation/A. Segmentation'
    from medsegpaper.io import write_image
    write_image(sa/'2. All Segmentation Groundtruths/b. Testing Set/1. Microaneurysms/IDRiD_04_MA.tif', np.zeros((10, 10), np.uint8))
    with pytest.raises(DataError, match=r'IDRiD_04_MA.tif: label shape \(10, 10\) does not match image IDRiD_04.jpg'): load_2d('idrid', 'test', tmp_path)
    jpg = sa/'1. Original Images/a. Training Set/IDRiD_02.jpg'
    jpg.write_bytes(jpg.read_bytes()[:150])
    with pytest.raises(DataError, match='IDRiD_02.jpg: unreadable image'): load_2d('idrid', 'train', tmp_path)


def test_totalsegmentator_mask_affine_mismatch(tmp_path):
    d = D.write_totalsegmentator_sample(tmp_path)
    write_nifti(d/'s0003/segmentations/liver.nii.gz', np.zeros((12, 12, 4), np.uint8), spacing=(1, 1, 1))
    with pytest.raises(DataError, match='s0003/segmentations/liver.nii.gz: affine differs'): load_3d('totalsegmentator', 'valid', tmp_path)


def test_imagenet_bad_labels_json(tmp_path):
    d = D.write_imagenet_sample(tmp_path)
    (d/'labels.json').write_text('{"data/a.npy": 1,')
    with pytest.raises(DataError, match='labels.json: invalid JSON'): load_items('imagenet', 'train', tmp_path)


# ---- disk cache ----

def test_cache_skips_decoding_and_sees_changed_files(tmp_path, monkeypatch):
    D.write_acdc_sample(tmp_path, n_train=1, n_test=1)
    first = load_3d('acdc', 'train', tmp_path)
    calls = []
    real = DC.read_nifti_pair
    monkeypatch.setattr(DC, 'read_nifti_pair', lambda *a, **k: calls.append(a) or real(*a, **k))
    again = load_3d('acdc', 'train', tmp_path)
    assert not calls and all((a.image == b.image).all() for a, b in zip(first, again))
    write_nifti(_acdc_gt(tmp_path), np.ones((24, 24, 3), np.uint8), spacing=(1.5, 1.5, 10))
    changed = load_3d('acdc', 'train', tmp_path)
    assert len(calls) == 1 and (changed[0].label == 1).all()
    load_3d('acdc', 'train', tmp_path, cache=False)
    assert len(calls) == 3


def _cache_worker(args):
    src, folder = args
    return cached(lambda path: (read_npy(path) * 2,), [src], dict(path=src), folder)[0].sum()


def test_cache_concurrent_writers(tmp_path):
    src = tmp_path/'a.npy'; np.save(src, np.arange(1000.))
    with mp.get_context('fork').Pool(4) as pool:
        sums = pool.map(_cache_worker, [(str(src), str(tmp_path/'cache'))] * 8)
    assert set(sums) == {2 * np.arange(1000.).sum()}
    entries = list((tmp_path/'cache').iterdir())
    assert len(entries) == 1 and not any('.tmp' in e.name for e in entries)


# ---- generated 3D spheres (study 003) ----

SPHERES = dict(volume_size=16, n_train=2, n_val=1, n_test=2, seed=0)


def _spheres_worker(root):
    return [float(v.image.sum()) for s in SPLITS for v in load_3d('synthetic3d', s, root, **SPHERES)]


def test_synthetic3d_concurrent_first_use(tmp_path):
    with mp.get_context('fork').Pool(4) as pool:
        sums = pool.map(_spheres_worker, [str(tmp_path)] * 8)
    assert len(sums[0]) == 5 and all(s == sums[0] for s in sums)
    folder = D.synthetic3d_folder(tmp_path, **SPHERES)
    assert sorted(p.name for p in folder.iterdir()) == ['dataset.json', 'imagesTr', 'imagesTs', 'labelsTr', 'labelsTs']
    assert len(json.loads((folder/'dataset.json').read_text())['test']) == 2


def test_synthetic3d_damaged_dataset_json_names_the_file(tmp_path):
    load_3d('synthetic3d', 'test', tmp_path, **SPHERES)
    meta = D.synthetic3d_folder(tmp_path, **SPHERES)/'dataset.json'
    meta.write_text(meta.read_text()[:40])
    with pytest.raises(DataError, match=re.escape(f'{meta}: invalid JSON')): load_3d('synthetic3d', 'train', tmp_path, **SPHERES)


# ---- CLI ----

def test_cli_sample_then_check(tmp_path, capsys):
    for name in WITH_SAMPLE:
        assert D.data_cli(['sample', name, str(tmp_path)]) == 0
        assert D.data_cli(['check', name, '--root', str(tmp_path)]) == 0
        assert re.search(rf'{name}: \d+ files, 0 errors, \d+ warnings$', capsys.readouterr().out.strip())


def test_cli_reports_bad_files_with_status_1(tmp_path, capsys):
    D.write_acdc_sample(tmp_path, n_train=1, n_test=1)
    _acdc_gt(tmp_path).write_bytes(b'junk')
    assert D.data_cli(['check', 'acdc', '--root', str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'patient001_frame01_gt.nii.gz: unreadable NIfTI' in err


def _tree(folder) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob('*'))}


@pytest.mark.parametrize('cache', [True, False])
def test_a_read_only_data_folder_is_read_and_left_as_it_was(tmp_path, monkeypatch, cache):
    "The cache lives in its own folder: reading a dataset (here ACDC, whose volumes are cached) writes nothing into the data."
    root, cache_folder = tmp_path/'data', tmp_path/'cache'
    monkeypatch.setenv('MEDSEGPAPER_CACHE', str(cache_folder))
    D.write_acdc_sample(root)
    before = _tree(root)
    for p in [root, *root.rglob('*')]: p.chmod(p.stat().st_mode & ~0o222)
    try:
        vols = load_3d('acdc', 'train', root, cache=cache)
        again = load_3d('acdc', 'train', root, cache=cache)
    finally:
        for p in [root, *root.rglob('*')]: p.chmod(p.stat().st_mode | 0o200)
    assert_valid_3d(vols)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(vols, again))
    assert _tree(root) == before
    assert cache_folder.is_dir() == cache and (not cache or any(cache_folder.iterdir()))


@pytest.mark.parametrize('name', WITH_SAMPLE)
def test_a_check_caches_nothing(samples, name, tmp_path, monkeypatch):
    "`check` reads every file afresh: no reader, not even one taking its options through **kw, stores a cache entry."
    monkeypatch.setenv('MEDSEGPAPER_CACHE', str(tmp_path/'cache'))
    assert not D.check_dataset(name, samples).errors
    assert not (tmp_path/'cache').exists() or not any((tmp_path/'cache').iterdir())
