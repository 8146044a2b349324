"IDRiD and COVID-QU readers end to end on their samples: published names, study 000's label resizes, every problem in one pass."
import shutil, warnings

import numpy as np
import pytest
import torch

from medsegpaper.datasets import DataReport, SPLITS, load_2d, write_covid_qu_sample, write_idrid_sample
from medsegpaper.io import DataError, DataWarning, read_image, write_image
from medsegpaper.transforms import seg_dataloaders


def _idrid_gt(root, part='a. Training Set'):
    return root/'idrid/Segmentation/A. Segmentation/2. All Segmentation Groundtruths'/part


def _covid_png(root):
    return root/'COVID_QU/Infection Segmentation Data/Infection Segmentation Data'


def test_idrid_sample_has_published_names(tmp_path):
    d = write_idrid_sample(tmp_path)
    seg = d/'Segmentation/A. Segmentation'
    assert sorted(p.name for p in (seg/'1. Original Images/a. Training Set').iterdir()) == ['IDRiD_01.jpg', 'IDRiD_02.jpg', 'IDRiD_03.jpg']
    assert (seg/'2. All Segmentation Groundtruths/b. Testing Set/1. Microaneurysms/IDRiD_04_MA.tif').is_file()
    assert (seg/'2. All Segmentation Groundtruths/a. Training Set/2. Haemarrhages/IDRiD_02_HE.tif').is_file()
    assert read_image(seg/'2. All Segmentation Groundtruths/a. Training Set/1. Microaneurysms/IDRiD_01_MA.tif').shape == (48, 72, 3)


def test_idrid_reads_every_split_with_both_label_resizes(tmp_path):
    write_idrid_sample(tmp_path)
    for rule in ('nearest', 'bilinear_nonzero'):
        sets = {s: load_2d('idrid', s, tmp_path, size=(36, 24), label_resize=rule) for s in SPLITS}
        assert [len(sets[s]) for s in SPLITS] == [3, 2, 2]
        for ds in sets.values():
            assert all(i.shape == (3, 24, 36) and i.dtype == np.float32 and 0 <= i.min() and i.max() <= 1 for i in ds.images)
            assert all(l.shape == (24, 36) and set(np.unique(l)) <= {0, 1} for l in ds.labels)
        assert sum(l.sum() for l in sets['train'].labels) > 0


def test_idrid_renamed_folders_and_masks_give_the_same_labels(tmp_path):
    write_idrid_sample(tmp_path)
    with pytest.warns(DataWarning, match='no HE mask'): ref = load_2d('idrid', 'train', tmp_path, lesions=('MA', 'HE'), cache=False).labels
    gt = _idrid_gt(tmp_path)
    (gt/'2. Haemarrhages').rename(gt/'2. HAEMORRHAGES')
    (gt/'1. Microaneurysms').rename(gt/'1. microaneurysms')
    for p in (gt/'1. microaneurysms').iterdir(): p.rename(p.with_suffix('.TIF'))
    (gt/'2. HAEMORRHAGES/IDRiD_02_HE.tif').rename(gt/'2. HAEMORRHAGES/IDRiD_02_HE.tiff')
    with pytest.warns(DataWarning, match='1 of 3 images have no HE mask: IDRiD_01'):
        got = load_2d('idrid', 'train', tmp_path, lesions=('MA', 'HE'), cache=False).labels
    assert all((a == b).all() for a, b in zip(got, ref)) and any((l == 2).any() for l in got)


def test_idrid_missing_masks_warn_once_with_count_or_fail(tmp_path):
    write_idrid_sample(tmp_path)
    gt = _idrid_gt(tmp_path)
    (gt/'1. Microaneurysms/IDRiD_02_MA.tif').unlink()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        ds = load_2d('idrid', 'train', tmp_path, lesions=('MA', 'HE'))
    msgs = sorted(x.message.problem for x in w if x.category is DataWarning)
    assert msgs == ['1 of 3 images have no HE mask: IDRiD_01', '1 of 3 images have no MA mask: IDRiD_02']
    assert len(ds) == 3 and not (ds.labels[1] == 1).any()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert load_2d('idrid', 'train', tmp_path, lesions=('MA', 'HE'), missing='drop').names == ['IDRiD_03']
    for p in (gt/'1. Microaneurysms').iterdir(): p.unlink()
    with pytest.raises(DataError, match=r'a. Training Set/1. Microaneurysms: no MA mask for any of the 3 images \(0 .tif files there\)'):
        load_2d('idrid', 'train', tmp_path)


def test_idrid_check_reports_every_problem_in_one_pass(tmp_path):
    write_idrid_sample(tmp_path)
    gt = _idrid_gt(tmp_path)
    shutil.copy(gt/'1. Microaneurysms/IDRiD_01_MA.tif', gt/'1. Microaneurysms/IDRiD_1_MA.tif')
    (gt/'1. Microaneurysms/IDRiD_03_MA.tif').unlink()
    write_image(gt/'2. Haemarrhages/IDRiD_02_HE.tif', np.zeros((10, 10), np.uint8))
    img = tmp_path/'idrid/Segmentation/A. Segmentation/1. Original Images/a. Training Set/IDRiD_03.jpg'
    img.write_bytes(img.read_bytes()[:100])
    with DataReport('idrid').collect() as rep:
        ds = load_2d('idrid', 'train', tmp_path, lesions=('MA', 'HE'), cache=False)
    found = sorted((f.level, f.path.split('/')[-1], f.problem) for f in rep.findings)
    expected = [('error', 'IDRiD_02_HE.tif', 'label shape (10, 10) does not match image IDRiD_02.jpg shape (48, 72)'),
                ('error', 'IDRiD_03.jpg', 'unreadable image'),
                ('error', 'IDRiD_1_MA.tif', 'not the MA mask of any image'),
                ('warning', '1. Microaneurysms', '1 of 3 images have no MA mask: IDRiD_03'),
                ('warning', '2. Haemarrhages', '1 of 3 images have no HE mask: IDRiD_01')]
    assert [f[:2] for f in found] == [e[:2] for e in expected]
    assert all(f[2].startswith(e[2]) for f, e in zip(found, expected)), found
    assert ds.names == ['IDRiD_01']


def test_covid_sample_has_the_kaggle_layout(tmp_path):
    write_covid_qu_sample(tmp_path)
    base = _covid_png(tmp_path)
    assert sorted(p.name for p in base.iterdir()) == ['Test', 'Train', 'Val']
    grp = base/'Train/COVID-19'
    assert sorted(p.name for p in grp.iterdir()) == ['images', 'infection masks', 'lung masks']
    assert sorted(p.name for p in (grp/'images').iterdir()) == ['covid_1.png', 'covid_2.png', 'covid_3.png', 'covid_4.png']
    assert (base/'Test/Normal/infection masks/Normal (3).png').is_file()
    assert set(np.unique(read_image(grp/'infection masks/covid_1.png'))) == {0, 255}


@pytest.mark.parametrize('layout', ['png', 'npy'])
def test_covid_reads_every_split_and_trains(tmp_path, layout):
    write_covid_qu_sample(tmp_path, layout=layout)
    sets = {s: load_2d('covid_qu', s, tmp_path, channels=3) for s in SPLITS}
    assert [len(sets[s]) for s in SPLITS] == [6, 3, 3]
    for ds in sets.values():
        assert all(i.shape == (3, 32, 32) and i.dtype == np.float32 and 0 <= i.min() and i.max() <= 1 for i in ds.images)
        assert all(set(np.unique(l)) <= {0, 1} for l in ds.labels) and any(l.any() for l in ds.labels)
    assert not set(sets['train'].names) & set(sets['test'].names)
    dls = seg_dataloaders(sets['train'], sets['valid'], img_size=24, batch_size=2, label_resize='bilinear_trunc')
    x, y = dls.one_batch()
    assert x.shape == (2, 3, 24, 24) and set(torch.unique(y).tolist()) <= {0, 1}


def test_covid_bad_inputs_each_named(tmp_path):
    write_covid_qu_sample(tmp_path)
    base = _covid_png(tmp_path)
    write_image(base/'Train/COVID-19/infection masks/covid_2.png', np.full((32, 32), 1, np.uint8))
    with pytest.raises(DataError, match=r'covid_2.png: mask values \[1\] besides 0 and 255'): load_2d('covid_qu', 'train', tmp_path)
    shutil.rmtree(base/'Test/COVID-19/images'); (base/'Test/COVID-19/images').mkdir()
    with pytest.raises(DataError, match=r'Test/COVID-19/images: no .png images \(folder empty\)'): load_2d('covid_qu', 'test', tmp_path)
    shutil.rmtree(base/'Val')
    with pytest.raises(DataError, match=r'Val/COVID-19/images: no .png images \(folder not found'): load_2d('covid_qu', 'train', tmp_path)


def test_covid_check_reports_every_problem_in_one_pass(tmp_path):
    write_covid_qu_sample(tmp_path)
    grp = _covid_png(tmp_path)/'Train/COVID-19'
    write_image(grp/'infection masks/covid_1.png', np.full((32, 32), 9, np.uint8))
    (grp/'infection masks/covid_3.png').unlink()
    write_image(grp/'infection masks/covid_99.png', np.zeros((32, 32), np.uint8))
    with DataReport('covid_qu').collect() as rep: ds = load_2d('covid_qu', 'train', tmp_path)
    assert sorted(f.path.split('/')[-1] for f in rep.errors) == ['covid_1.png', 'covid_3.png', 'covid_99.png']
    assert ds.names == ['covid_2', 'covid_4', 'covid_101', 'covid_102']


def test_covid_study_arrays_float_scaling_is_explicit(tmp_path):
    d = write_covid_qu_sample(tmp_path, layout='npy', spaces=True)
    f = d/'Inf_segm/data arrays/COVID-19/train and val'
    np.save(f/'imgs.npy', np.load(f/'imgs.npy').astype(np.float64))
    with pytest.raises(DataError, match=r'imgs.npy: intensities span \[.*\], outside \[0, 1\] \(float64 values; pass scale='):
        load_2d('covid_qu', 'train', tmp_path)
    ds = load_2d('covid_qu', 'train', tmp_path, scale=255)
    assert max(i.max() for i in ds.images) <= 1 and len(ds) == 6
