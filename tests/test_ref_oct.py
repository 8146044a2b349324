"oct_dme on study 001's published PNG conversion (../shared/reference/oct_dme_png): the study's split, shapes, labels, empty masks."
from pathlib import Path

import numpy as np
import pytest

from medsegpaper.datasets import DataReport, check_consistency, load_2d

SPLIT_FILES = {'train': 'train.txt', 'valid': 'val.txt', 'test': 'val.txt'}


@pytest.fixture
def study(reference, tmp_path):
    "(data root holding the published files as oct_dme/ by a symlink, the published folder)."
    src = reference/'oct_dme_png'
    if not src.is_dir(): pytest.skip(f'{src} not found')
    (tmp_path/'oct_dme').symlink_to(src, target_is_directory=True)
    return tmp_path, src


@pytest.fixture
def sets(study):
    root, _ = study
    return {s: load_2d('oct_dme', s, root, cache=False) for s in SPLIT_FILES}


def test_the_studys_split(study, sets):
    _, src = study
    for split, f in SPLIT_FILES.items():
        assert sets[split].names == (src/'splits'/f).read_text().split()
    assert [len(sets[s]) for s in SPLIT_FILES] == [88, 22, 22]
    assert len(set(sets['train'].names) | set(sets['valid'].names)) == 110


def test_shapes_and_labels(sets):
    for ds in sets.values():
        assert ds.classes == ['background', 'fluid'] and ds.in_channels == 1
        assert {img.shape for img in ds.images} == {(1, 256, 256)} and {img.dtype for img in ds.images} == {np.dtype('float32')}
        assert 0 <= min(img.min() for img in ds.images) and max(img.max() for img in ds.images) <= 1
        assert set(np.unique(np.stack(ds.labels)).tolist()) == {0, 1}


def test_empty_masks(sets):
    empty = {s: sum(not lbl.any() for lbl in sets[s].labels) for s in SPLIT_FILES}
    assert (empty['train'] + empty['valid'], empty['valid'], empty['test']) == (32, 11, 11)


def test_check_reads_every_file_without_reader_errors(study):
    root, _ = study
    rep = DataReport('oct_dme')
    with rep.collect():
        for s in SPLIT_FILES: load_2d('oct_dme', s, root, cache=False)
    assert rep.findings == [] and len(rep.files) == 220
