"The installed `medsegpaper-data` console script, run as a user runs it: output streams and exit status."
import subprocess, sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from medsegpaper.datasets import DATASETS, check_dataset, write_acdc_sample


def _script() -> list[str]:
    "The console script beside this interpreter, else the entry point it would run (both exit with data_main's status)."
    (ep,) = [e for e in entry_points(group='console_scripts') if e.name == 'medsegpaper-data']
    assert ep.value == 'medsegpaper.cli:data_main'
    exe = Path(sys.executable).parent/'medsegpaper-data'
    return [str(exe)] if exe.is_file() else [sys.executable, '-c', 'import sys; from medsegpaper.cli import data_main; sys.exit(data_main())']


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv('MEDSEGPAPER_CACHE', str(tmp_path/'cache'))  # shared by this process and the script's
    monkeypatch.delenv('MEDSEGPAPER_DATA', raising=False)
    return lambda *args: subprocess.run([*_script(), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_check_clean_then_damaged_sample(cli, tmp_path):
    write_acdc_sample(tmp_path)
    report = check_dataset('acdc', tmp_path)
    expected = [f'acdc {part}: {line}' for part, line in report.parts.items()] + [f'acdc: {report.summary()}']
    ok = cli('check', 'acdc', '--root', str(tmp_path))
    assert ok.returncode == 0 and ok.stdout.splitlines() == expected and 'error' not in ok.stderr
    assert expected[-1] == 'acdc: 20 files, 0 errors, 0 warnings'
    img = tmp_path/'ACDC/testing/patient005/patient005_frame01.nii.gz'
    img.write_bytes(img.read_bytes()[:100])
    gt = tmp_path/'ACDC/training/patient001/patient001_frame01_gt.nii.gz'
    gt.write_bytes(b'junk')
    bad = cli('check', 'acdc', '--root', str(tmp_path))
    assert bad.returncode == 1 and bad.stdout.splitlines()[-1] == 'acdc: 20 files, 2 errors, 0 warnings'
    lines = bad.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f'error: {gt}: unreadable NIfTI file') and lines[1].startswith(f'error: {img}: unreadable NIfTI file')


def test_list_names_every_dataset(cli):
    listed = cli('list')
    assert listed.returncode == 0 and all(f'\n| {n} |' in listed.stdout for n in DATASETS)
    assert '\n| synthetic3d | 3d |' in listed.stdout  # registered by the datasets module itself, not by the study's fbr
