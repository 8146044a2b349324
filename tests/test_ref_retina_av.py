"The AV readers on study 002's published DRIVE-AV, LES-AV and HRF-AV files, the sample writers against them, and broken copies."
import re, shutil

import numpy as np
import pytest
from PIL import Image

from medsegpaper.datasets import DATASETS, DataReport, load_2d
from medsegpaper.io import DataError, DataWarning

# dataset -> (folder as shipped, training images, test images); HRF-AV is the subset in the reference folder
COUNTS = {'drive_av': ('DRIVE_AV', 20, 20), 'les_av': ('LES-AV', 11, 11), 'hrf_av': ('HRF-AV', 6, 6)}
SIZE = (160, 128)  # (W, H): the checks run on the full-size files, the arrays are kept small


@pytest.fixture
def av_ref(reference):
    return reference/'retina_av'


@pytest.mark.parametrize('name', COUNTS)
def test_reader_reads_every_reference_file(av_ref, name):
    folder, n_train, n_test = COUNTS[name]
    with DataReport(name).collect() as rep:
        sets = {s: load_2d(name, s, av_ref, size=SIZE, cache=False) for s in ('train', 'valid', 'test')}
    assert rep.findings == [] and len(rep.files) == 3 * (n_train + n_test)
    tr, va, te = sets.values()
    training = {f'{name}_{p.name.split(".")[0]}' for p in (av_ref/folder/'training/images').iterdir()}
    assert len(tr) + len(va) == n_train and set(tr.names) | set(va.names) == training and len(va) == max(1, round(0.1 * n_train))
    assert len(te) == n_test
    for ds in sets.values():
        assert ds.n_classes == 4 and ds.classes[1:3] == ['artery', 'vein']
        for img, lbl, mask in zip(ds.images, ds.labels, ds.masks):
            assert img.shape == (3, 128, 160) and img.dtype == np.float32 and -1e-5 <= img.min() and img.max() <= 1 + 1e-5  # antialiased resizing overshoots by ~1e-7
            assert mask.dtype == bool and mask.shape == img.shape[1:] and 0.5 < mask.mean() < 0.95
            assert lbl.min() >= 0 and lbl.max() <= 3 and (lbl == 1).any() and (lbl == 2).any()
            assert ((lbl > 0) & ~mask).sum() <= 0.01 * (lbl > 0).sum()  # vessels lie inside the field of view


def test_valid_test_option_on_reference(av_ref):
    tr = load_2d('drive_av', 'train', av_ref, valid='test', size=32, cache=False)
    va = load_2d('drive_av', 'valid', av_ref, valid='test', size=32, cache=False)
    assert len(tr) == 20 and len(va) == 20 and va.names[0] == 'drive_av_01_test' and tr.names[0] == 'drive_av_21_training'


def test_full_size_sample_has_the_image_shape(av_ref):
    ds = load_2d('drive_av', 'test', av_ref, cache=False)
    assert ds.images[0].shape == (3, 584, 565) and ds.masks[0].shape == ds.labels[0].shape == (584, 565)
    assert sorted(np.unique(ds.labels[0]).tolist()) == [0, 1, 2, 3]


# ---- the sample writers write what the published files are ----

def signature(path):
    "What a file is: format, PIL mode, array dtype and channels, TIFF compression, palette; labels and masks: their values."
    with Image.open(path) as im:
        arr = np.asarray(im)
        palette = tuple(im.getpalette()[:6]) if im.mode == 'P' else None
        values = None if path.parent.name == 'images' else tuple(np.flatnonzero(np.bincount(arr.ravel())).tolist())
        return im.format, im.mode, arr.dtype.str, arr.shape[2:], im.info.get('compression'), palette, values


def describe(folder):
    "Per split and subfolder: the set of names with numbers as N, and the set of file signatures."
    out = {}
    for sub in sorted(p for p in folder.glob('*/*') if p.is_dir()):
        files = sorted(sub.iterdir())
        out[sub.relative_to(folder).as_posix()] = ({re.sub(r'\d+', 'N', p.name) for p in files}, {signature(p) for p in files})
    return out


@pytest.mark.parametrize('name', COUNTS)
def test_sample_writer_matches_reference_files(av_ref, tmp_path, name):
    folder = COUNTS[name][0]
    DATASETS[name].write_sample(tmp_path, n_train=3, n_test=3)
    ref, sample = describe(av_ref/folder), describe(tmp_path/folder)
    assert set(sample) == set(ref) == {f'{s}/{f}' for s in ('training', 'test') for f in ('images', '1st_manual', 'mask')}
    for sub in ref:
        assert sample[sub][0] == ref[sub][0], f'{name} {sub}: names {sample[sub][0]} vs published {ref[sub][0]}'
        assert sample[sub][1] == ref[sub][1], f'{name} {sub}: files {sample[sub][1]} vs published {ref[sub][1]}'


# ---- broken copies of reference files ----

def copy_pairs(av_ref, dest, folder, split, stems):
    "Copy the image, label and mask of `stems` from the reference `folder/split` into the same layout under `dest`."
    for stem in stems:
        for f in (av_ref/folder/split).glob(f'*/{stem}[._]*'):
            (dest/f.relative_to(av_ref).parent).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dest/f.relative_to(av_ref))
    return dest/folder/split


def vessel_map(label_path):
    "DRIVE-style binary vessel annotation (0/255) made from an AV label."
    return Image.fromarray(((np.asarray(Image.open(label_path)) > 0) * 255).astype(np.uint8))


def test_drive_vessel_map_is_refused(av_ref, tmp_path):
    d = copy_pairs(av_ref, tmp_path, 'DRIVE_AV', 'test', ['01_test', '02_test'])
    lbl = d/'1st_manual/01_test.png'
    vessel_map(lbl).save(d/'1st_manual/01_manual1.gif', optimize=False)  # DRIVE's own annotation in place of the AV label
    lbl.unlink()
    with pytest.raises(DataError, match=r"01_test.tif: missing partner file .*01_manual1.gif there is DRIVE's binary vessel map, not artery/vein"):
        load_2d('drive_av', 'test', tmp_path, cache=False)
    vessel_map(d/'1st_manual/02_test.png').save(lbl)  # ... or renamed as the AV label
    with pytest.warns(DataWarning, match='1 files belong to no image .*: 01_manual1.gif'), \
         pytest.raises(DataError, match=r'01_test.png: a binary vessel map \(values 0/255'):
        load_2d('drive_av', 'test', tmp_path, cache=False)


@pytest.mark.parametrize('content', [b'', b'not a png at all' * 10], ids=['zero-byte', 'garbage'])
def test_unreadable_label_names_the_file(av_ref, tmp_path, content):
    d = copy_pairs(av_ref, tmp_path, 'LES-AV', 'test', ['224'])
    (d/'1st_manual/224.png').write_bytes(content)
    with pytest.raises(DataError, match=r'1st_manual/224.png: unreadable image'):
        load_2d('les_av', 'test', tmp_path, cache=False)


def test_multichannel_label_and_grey_image_name_the_file(av_ref, tmp_path):
    d = copy_pairs(av_ref, tmp_path, 'DRIVE_AV', 'test', ['01_test'])
    lbl = np.asarray(Image.open(d/'1st_manual/01_test.png'))
    Image.fromarray(np.stack([lbl] * 3, -1)).save(d/'1st_manual/01_test.png')  # values 0..3 in RGB: would read as all background
    with pytest.raises(DataError, match=r'01_test.png: label with 3 channels; expected one channel'):
        load_2d('drive_av', 'test', tmp_path, cache=False)
    Image.fromarray(lbl).save(d/'1st_manual/01_test.png')
    Image.open(d/'images/01_test.tif').convert('L').save(d/'images/01_test.tif')
    with pytest.raises(DataError, match=r'01_test.tif: image with one channel; expected an RGB'):
        load_2d('drive_av', 'test', tmp_path, cache=False)


def test_hrf_mask_with_colours_is_refused(av_ref, tmp_path):
    d = copy_pairs(av_ref, tmp_path, 'HRF-AV', 'training', ['01_h'])
    Image.open(d/'images/01_h.jpg').save(d/'mask/01_h_mask.tif')
    with pytest.raises(DataError, match=r'01_h_mask.tif: mask with 3 channels that differ'):
        load_2d('hrf_av', 'train', tmp_path, valid='test', size=64, cache=False)


def test_check_reports_every_missing_partner_and_reads_on(av_ref, tmp_path):
    d = copy_pairs(av_ref, tmp_path, 'DRIVE_AV', 'test', ['01_test', '02_test', '03_test'])
    (d/'mask/01_test_mask.gif').unlink()
    (d/'1st_manual/02_test.png').unlink()
    with DataReport('drive_av').collect() as rep:
        ds = load_2d('drive_av', 'test', tmp_path, cache=False)
    assert ds.names == ['drive_av_03_test']
    assert [(f.level, f.path.split('/')[-1]) for f in rep.findings] == [('error', '01_test.tif'), ('error', '02_test.tif')]
    assert 'missing partner file' in rep.findings[0].problem and '01_test_mask.gif' in rep.findings[0].problem
    assert '1st_manual/02_test.png' in rep.findings[1].problem
