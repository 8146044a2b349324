"The installed `medsegpaper-data` console script, run as a user runs it: output streams and exit status."
import subprocess, sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from medsegpaper.datasets import DATASETS, check_dataset, write_acdc_sample


def _script() -> list[str]:
    "The console script beside this interpreter, else the entry point it would run (both exit with data_cli's status)."
    (ep,) = [e for e in entry_points(group='console_scripts') if e.name == 'medsegpaper-data']
    assert ep.value == 'medsegpaper.datasets.cli:data_cli'
    exe = Path(sys.executable).parent/'medsegpaper-data'
    return [str(exe)] if exe.is_file() else [sys.executable, '-c', 'import sys; from medsegpaper.datasets import data_cli; sys.exit(data_cli())']


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv('MEDSEGPAPER_CACHE', str(tmp_path/'cache'))  # shared by this process and the script's
    monkeypatch.delenv('MEDSEGPAPER_DATA', raising=False)
    return lambda *args: subprocess.run([*_script(), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_check_clean_then_damaged_sample(cli, tmp_path):
    write_acdc_sample(tmp_path)
    expected = [f'acdc {split}: {line}' for split, line in check_dataset('acdc', tmp_path).items()] + ['acdc: ok']
    ok = cli('check', 'acdc', '--root', str(tmp_path))
    assert ok.returncode == 0 and ok.stdout.splitlines() == expected and 'error' not in ok.stderr
    img = tmp_path/'ACDC/testing/patient005/patient005_frame01.nii.gz'  # cached by the clean check: the cache must notice
    img.write_bytes(img.read_bytes()[:100])
    bad = cli('check', 'acdc', '--root', str(tmp_path))
    assert bad.returncode == 1 and 'acdc: ok' not in bad.stdout
    assert bad.stderr.startswith(f'error: {img}: unreadable NIfTI')


def test_list_names_every_dataset(cli):
    listed = cli('list')
    assert listed.returncode == 0 and all(f'\n| {n} |' in listed.stdout for n in DATASETS)
    assert '\n| synthetic3d | 3d |' in listed.stdout  # registered by the datasets module itself, not by the study's fbr
