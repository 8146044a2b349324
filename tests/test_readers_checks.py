"Issue 8 for TotalSegmentator, ImageNet-format, ACDC and MSD: nothing guessed, and a check reports every problem in one pass."
import json, shutil

import numpy as np
import pytest

from medsegpaper import datasets as D
from medsegpaper.io import DataError, DataWarning, write_nifti
from medsegpaper.datasets import SPLITS, DataReport, check_dataset, load_2d, load_3d, load_items


def check(read) -> DataReport:
    "`read(split)` for every split inside one `DataReport.collect()` (`check_dataset` does this with `cache=False`)."
    with DataReport().collect() as rep:
        for split in SPLITS: read(split)
    return rep


def problems(rep, level='error') -> list[tuple[str, str]]:
    return [(f.path, f.problem) for f in rep.findings if f.level == level]


# TotalSegmentator v1

def _mask(d, case, structure, arr):
    write_nifti(d/case/'segmentations'/f'{structure}.nii.gz', arr, spacing=(1.5, 1.5, 1.5))


def test_totalseg_check_reports_missing_cases_bad_masks_and_overlaps(tmp_path):
    d = D.write_totalsegmentator_sample(tmp_path, n=6)  # train s0000..s0003, val s0004, test s0005
    shutil.rmtree(d/'s0001'); shutil.rmtree(d/'s0005')
    _mask(d, 's0002', 'spleen', np.full((12, 12, 4), 3, np.uint8))
    liver = D.read_totalseg_case(d/'s0003', ['liver'])[1]  # (D,H,W), canonical: same axes as written, transposed
    _mask(d, 's0003', 'kidney_left', np.ones((12, 12, 4), np.uint8))
    rep = check(lambda split: load_3d('totalsegmentator', split, tmp_path, cache=False))
    assert problems(rep) == [(str(d/'meta.csv'), f'case s0001 (split train) is listed but {d}/s0001/ct.nii.gz is not there'),
                             (str(d/'s0002/segmentations/spleen.nii.gz'), 'mask values [3] are not binary (0/1)'),
                             (str(d/'meta.csv'), f'case s0005 (split test) is listed but {d}/s0005/ct.nii.gz is not there'),
                             (str(d), "no cases in split 'test'")]
    (warning,) = problems(rep, 'warning')
    n = int((liver > 0).sum())  # kidney_left is first in the default (sorted) order: liver and spleen overwrite it
    assert warning[0] == str(d) and warning[1].startswith("1 of 2 cases of split 'train' have voxels in two structure masks, merged by overlap='last'")
    assert f's0003 (kidney_left & liver: {n} voxels; kidney_left & spleen: ' in warning[1]
    assert len(rep.files) == 4 * 4  # s0000, s0002, s0003 of train and s0004 of val, 4 files each (s0002's too: read, found broken)


def test_totalseg_ct_that_is_a_broken_link_is_an_error(tmp_path):
    "Without meta.csv the cases are the folders holding ct.nii.gz: one that is a broken link is named, not dropped."
    import os
    d = D.write_totalsegmentator_sample(tmp_path, n=6, size=16, depth=4)
    (d/'meta.csv').unlink(missing_ok=True)
    ct = d/'s0002'/'ct.nii.gz'; ct.unlink(); os.symlink(tmp_path/'nowhere.nii.gz', ct)
    assert problems(check_dataset('totalsegmentator', tmp_path)) == [(str(ct), f'a broken link to {tmp_path/"nowhere.nii.gz"}')]


def test_totalseg_class_index_means_one_structure_in_every_split(tmp_path):
    "The class table is the union over every case of the dataset; a validation case lacking kidney_left is reported, not renumbered."
    d = D.write_totalsegmentator_sample(tmp_path, n=5, size=16, depth=4)
    missing = d/'s0003'/'segmentations'/'kidney_left.nii.gz'  # s0003 validates (meta.csv)
    missing.unlink()
    assert {split: tuple(load_2d('totalsegmentator', split, tmp_path, cache=False).classes) for split in ('train', 'test')} == \
           dict.fromkeys(('train', 'test'), ('background', 'kidney_left', 'liver', 'spleen'))
    found = problems(check_dataset('totalsegmentator', tmp_path))
    assert len(found) == 1 and str(missing) in found[0][1], found


def test_totalseg_overlap_rules(tmp_path):
    d = D.write_totalsegmentator_sample(tmp_path, n=3)
    _mask(d, 's0000', 'spleen', np.ones((12, 12, 4), np.uint8))
    kw = dict(structures=['liver', 'spleen'], max_cases=1, cache=False)
    with pytest.warns(DataWarning, match=r's0000 \(liver & spleen: \d+ voxels\)'): last = load_3d('totalsegmentator', 'train', tmp_path, **kw)[0]
    with pytest.warns(DataWarning): first = load_3d('totalsegmentator', 'train', tmp_path, overlap='first', **kw)[0]
    liver = first.label == 1
    assert liver.any() and (last.label == 2).all() and (first.label[~liver] == 2).all()
    with pytest.raises(DataError, match=r"s0000/segmentations: voxels in two structure masks \(overlap='error'\)"):
        load_3d('totalsegmentator', 'train', tmp_path, overlap='error', **kw)
    with pytest.raises(ValueError, match='Unknown overlap'): load_2d('totalsegmentator', 'train', tmp_path, overlap='union', **kw)
    rep = check(lambda split: load_3d('totalsegmentator', split, tmp_path, overlap='error', cache=False, structures=['liver', 'spleen']))
    assert [p for p, _ in problems(rep)] == [str(d/'s0000/segmentations')] and not rep.warnings


def test_totalseg_no_overlap_no_warning(tmp_path, recwarn):
    D.write_totalsegmentator_sample(tmp_path)
    for split in SPLITS: load_3d('totalsegmentator', split, tmp_path, cache=False)
    assert not [w for w in recwarn if issubclass(w.category, DataWarning)]


# ImageNet format

@pytest.mark.parametrize('text, expected', [
    ('{}', 'empty: no file is given a class'),
    ('[["data/a.npy", 1]]', 'a JSON list, not an object'),
    ('{"data/n01440760_10026.npy": "1"}', "1 classes are not integers, e.g. 'data/n01440760_10026.npy': '1'"),
    ('{"data/n01440760_10026.npy": 1.0}', "1 classes are not integers, e.g. 'data/n01440760_10026.npy': 1.0"),
    ('{"data/n01440760_10026.npy": 0}', '1 class indices outside 1..1000'),
    ('{"data/n01440760_10026.npy": 1001}', '1 class indices outside 1..1000'),
])
def test_imagenet_labels_json_is_validated(tmp_path, text, expected):
    d = D.write_imagenet_sample(tmp_path)
    (d/'labels.json').write_text(text)
    with pytest.raises(DataError) as e: load_items('imagenet', 'train', tmp_path)
    assert str(e.value).startswith(f'{d/"labels.json"}: {expected}')


def test_imagenet_check_opens_every_listed_file(tmp_path):
    d = D.write_imagenet_sample(tmp_path)
    val = sorted((d/'data').glob('ILSVRC2012_val_*.npy'))
    np.save(val[-1], np.zeros((3, 8, 8), np.int16))  # the last, not the first file
    (d/'data'/'n01440760_10026.npy').unlink()
    np.save(d/'data'/'ILSVRC2012_val_00000099.npy', np.zeros((3, 8, 8), np.uint8))
    rep = check(lambda split: load_items('imagenet', split, tmp_path))
    bad = f'{val[-1]}: expected a (3,H,W) uint8 array, got (3, 8, 8) int16'
    assert [str(f) for f in rep.errors] == [f"error: {d/'data/n01440760_10026.npy'}: file not found", f'error: {bad}']  # valid = test: once
    assert problems(rep, 'warning') == [(str(d/'data'), '1 validation files are not in labels.json and never used: ILSVRC2012_val_00000099.npy')]
    assert len(rep.files) == 9
    with DataReport().collect(): assert len(load_items('imagenet', 'valid', tmp_path)) == 2  # the broken one left out
    assert len(load_items('imagenet', 'valid', tmp_path)) == 3  # training reads lazily and fails on that file alone


def test_imagenet_missing_data_folder(tmp_path):
    d = D.write_imagenet_sample(tmp_path)
    shutil.rmtree(d/'data')
    with pytest.raises(DataError, match='imagenet/data: folder not found'): load_items('imagenet', 'train', tmp_path)


# ACDC

@pytest.mark.parametrize('cfg, expected', [
    ('ED: x\nES: 5\n', "Info.cfg: ED frame number 'x' is not an integer"),
    ('ED: 1.5\nES: 5\n', "Info.cfg: ED frame number '1.5' is not an integer"),
    ('ED: 1\nES: 12\n', 'Info.cfg: ES: 12 names frame patient001_frame12.nii.gz, which is not in'),
])
def test_acdc_bad_frame_number_names_info_cfg(tmp_path, cfg, expected):
    D.write_acdc_sample(tmp_path, n_train=1, n_test=1)
    (tmp_path/'ACDC/training/patient001/Info.cfg').write_text(cfg)
    with pytest.raises(DataError) as e: load_2d('acdc', 'train', tmp_path)
    assert expected in str(e.value) and 'patient001' in str(e.value)


def test_acdc_check_reports_every_broken_patient(tmp_path):
    d = D.write_acdc_sample(tmp_path, n_train=3, n_test=2)
    (d/'training/patient001/Info.cfg').write_text('ED: x\nES: y\n')
    (d/'training/patient003/patient003_frame07.nii.gz').unlink()  # ES: 7
    (d/'testing/patient005/Info.cfg').write_text('ED: 1\n')
    vols = {}
    rep = check(lambda split: vols.setdefault(split, load_3d('acdc', split, tmp_path, cache=False)))
    tr = lambda p: str(d/'training'/p/'Info.cfg')
    te = str(d/'testing/patient005/Info.cfg')
    assert problems(rep) == [(tr('patient001'), "ED frame number 'x' is not an integer"), (tr('patient001'), "ES frame number 'y' is not an integer"),
                             (tr('patient003'), f"ES: 7 names frame patient003_frame07.nii.gz, which is not in {d/'training/patient003'}"),
                             (te, "no ES frame number (has ['ED'])")]  # read for valid and test, reported once
    assert [v.name for v in vols['train']] == ['patient002_ED', 'patient002_ES', 'patient003_ED']
    assert [v.name for v in vols['test']] == ['patient004_ED', 'patient004_ES', 'patient005_ED']


def test_acdc_check_names_every_truncated_file(tmp_path):
    "Three truncated files (an image, its label, another image): all three named, the label although its image failed first."
    d = D.write_acdc_sample(tmp_path, n_train=3, n_test=2)
    broken = [d/'training/patient002/patient002_frame01.nii.gz', d/'training/patient002/patient002_frame01_gt.nii.gz',
              d/'training/patient003/patient003_frame01.nii.gz']
    for f in broken: f.write_bytes(f.read_bytes()[:40])
    named = {path for path, _ in problems(check_dataset('acdc', tmp_path))}
    assert named == {str(f) for f in broken}, named


# MSD

def test_msd_check_reports_each_missing_entry_once(tmp_path):
    d = D.write_msd_sample(tmp_path, n=8, n_test=0)
    gone = ['imagesTr/spleen_2.nii.gz', 'labelsTr/spleen_5.nii.gz', 'imagesTr/spleen_8.nii.gz', 'labelsTr/spleen_8.nii.gz']
    for p in gone: (d/p).unlink()
    kw = dict(n_train=4, n_valid=2, cache=False)  # sorted: 1 2 3 4 | 5 6 | 7 8
    vols = {}
    rep = check(lambda split: vols.setdefault(split, load_3d('msd', split, tmp_path, **kw)))
    js = str(d/'dataset.json')
    assert problems(rep) == [(js, f'training entry ./imagesTr/spleen_2.nii.gz: ./imagesTr/spleen_2.nii.gz not in {d}'),
                             (js, f'training entry ./imagesTr/spleen_5.nii.gz: ./labelsTr/spleen_5.nii.gz not in {d}'),
                             (js, f'training entry ./imagesTr/spleen_8.nii.gz: ./imagesTr/spleen_8.nii.gz and ./labelsTr/spleen_8.nii.gz not in {d}')]
    assert {s: [v.name for v in vols[s]] for s in SPLITS} == {'train': ['spleen_1', 'spleen_3', 'spleen_4'], 'valid': ['spleen_6'], 'test': ['spleen_7']}
    assert len(rep.files) == 2 * 5
    with pytest.raises(DataError, match='dataset.json: training entry ./imagesTr/spleen_2.nii.gz'): load_3d('msd', 'train', tmp_path, **kw)


def test_msd_malformed_training_list(tmp_path):
    d = D.write_msd_sample(tmp_path, n=4, n_test=0)
    info = json.loads((d/'dataset.json').read_text())
    (d/'dataset.json').write_text(json.dumps({**info, 'training': [*info['training'][:3], './imagesTr/spleen_4.nii.gz']}))
    with pytest.raises(DataError, match=r"dataset.json: training entry 3 is not \{'image': path, 'label': path\}: './imagesTr/spleen_4.nii.gz'"):
        load_3d('msd', 'train', tmp_path, n_train=2, n_valid=1)


# Through medsegpaper-data check's own function

def test_check_dataset_reports_these_readers_problems(tmp_path):
    d = D.write_totalsegmentator_sample(tmp_path)
    shutil.rmtree(d/'s0004')
    rep = check_dataset('totalsegmentator', tmp_path)
    assert [str(f) for f in rep.errors] == [f'error: {d}/meta.csv: case s0004 (split test) is listed but {d}/s0004/ct.nii.gz is not there',
                                            f"error: {d}: no cases in split 'test'"]
    assert rep.parts['train'].startswith('3 volumes') and rep.parts['valid'].startswith('1 volumes') and rep.parts['test'].startswith('0 volumes')
    i = D.write_imagenet_sample(tmp_path)
    np.save(sorted((i/'data').glob('n*.npy'))[-1], np.zeros((3, 4, 4), np.float32))
    rep = check_dataset('imagenet', tmp_path)
    assert len(rep.errors) == 1 and 'expected a (3,H,W) uint8 array' in rep.errors[0].problem and rep.parts['train'] == '5 items'
    assert rep.summary() == '9 files, 1 errors, 0 warnings'
