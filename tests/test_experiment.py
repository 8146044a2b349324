"The experiment contract on nbs/train.ipynb: every bad parameter named, run identity following the data, checkpoint folders kept to their run."
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import papermill as pm
import pytest

import medsegpaper.experiment as experiment
from medsegpaper.datasets.acdc import write_acdc_sample
from medsegpaper.experiment import DataRef, ParameterError, data_fingerprint, notebook_experiment
from .test_train import NB, REPO, TINY, run_train

BAD = [  # (papermill value of one parameter, the parameter named, what the message says is valid)
    ({'freeze_encoder': 'maybe'}, 'freeze_encoder', 'must be True or False'),
    ({'epochs': 0}, 'epochs', 'epochs must be >= 1, got 0'),
    ({'epochs': -1}, 'epochs', 'epochs must be >= 1, got -1'),
    ({'lr': -0.01}, 'lr', 'lr must be > 0, got -0.01'),
    ({'epoch': 1}, 'epoch', "Unknown parameter 'epoch' (did you mean 'epochs'?); valid parameters: dataset, dataset_opts"),
    ({'lr': 'abc'}, 'lr', "lr must be a finite number > 0, got 'abc'"),
    ({'epochs': 1.5}, 'epochs', 'epochs must be an integer >= 1, got 1.5'),
    ({'seed': 'abc'}, 'seed', "seed must be an integer, got 'abc'"),
    ({'width': 0}, 'width', 'width must be > 0, got 0'),
    ({'dataset_opts': '{"channels": 3}'}, 'dataset_opts', "pass lists and dicts with papermill's -y"),
    ({'dataset_opts': {'chanels': 3}}, 'dataset_opts', "unknown option 'chanels' for dataset 'brain'; valid options: size, "),
]


def test_papermill_sees_the_parameters_experiment_declares():
    assert list(pm.inspect_notebook(str(NB))) == list(notebook_experiment(NB).params)


@pytest.mark.parametrize('values,name,message', BAD, ids=[repr(values) for values, *_ in BAD])
def test_each_bad_parameter_is_named_before_the_run(values, name, message):
    with pytest.raises(ParameterError) as e:
        notebook_experiment(NB).plan({**TINY, **values})
    assert list(e.value.problems) == [name] and message in str(e.value), str(e.value)


@pytest.mark.parametrize('group', [
    dict(epochs=0, lr=-0.01, epoch=1, seed='abc', width=0, freeze_encoder='maybe'),
    dict(epochs=1.5, lr='abc'),
    dict(epochs=-1, dataset_opts='{"channels": 3}')])
def test_bad_papermill_parameters_fail_at_once_naming_each(tmp_path, group):
    with pytest.raises(pm.PapermillExecutionError) as e:
        run_train(tmp_path, **{**TINY, **group})
    msg = str(e.value)
    assert f'{len(group)} invalid parameters' in msg, msg
    for values, name, message in BAD:
        if values.items() <= group.items(): assert message in msg, (name, msg)
    assert not (tmp_path/'scores.csv').exists()


def test_string_false_from_the_command_line_is_false(tmp_path):
    csv = tmp_path/'scores.csv'
    cmd = [sys.executable, '-m', 'papermill', str(NB), str(tmp_path/'out.ipynb'), '-p', 'freeze_encoder', 'false',
           '-p', 'device', 'cpu', '-p', 'results', str(csv)] + [a for k, v in TINY.items() for a in ('-p', k, str(v))]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    row = pd.read_csv(csv).iloc[0]
    assert row['freeze_encoder'] == False  # noqa: E712 (the CSV holds the bool False, not the string 'false')
    assert json.loads(row['dataset_opts']) == {'block': 8, 'channels': 1, 'min_tissue': 0.05, 'size': None, 'tissue_threshold': 0.5}
    assert row['data_fingerprint'] == data_fingerprint(DataRef('brain'))['hash'] and row['data_files'] == 3


def test_other_data_root_is_another_run_and_reuses_no_checkpoint(tmp_path):
    a, b = tmp_path/'a', tmp_path/'b'
    write_acdc_sample(a)
    shutil.copytree(a, b)
    changed = sorted((b/'ACDC').rglob('*_frame01.nii.gz'))[0]
    img = nib.load(changed)
    data = np.asanyarray(img.dataobj).copy(); data.flat[0] += 1
    nib.save(nib.Nifti1Image(data, img.affine, img.header), changed)
    ckpt = tmp_path/'ckpt'
    params = dict(TINY, dataset='acdc', device='cpu', checkpoint_dir=str(ckpt))
    first = run_train(tmp_path, 'a', **params, data_root=str(a))
    folder_a = ckpt/first['run_id'].iloc[0]
    epoch0_a = (folder_a/'epoch_0.pth').read_bytes()
    both = run_train(tmp_path, 'b', **params, data_root=str(b))
    assert len(both) == 2 and both['run_id'].nunique() == 2 and both['data_fingerprint'].nunique() == 2
    folders = sorted(p.name for p in ckpt.iterdir())
    assert folders == sorted(both['run_id'])
    for run_id, root in zip(both['run_id'], (a, b)):
        made = json.loads((ckpt/run_id/'run.json').read_text())
        assert made['run_id'] == run_id and made['data']['hash'] == data_fingerprint(DataRef('acdc', str(root)))['hash']
        assert (ckpt/run_id/'epoch_0.pth').exists()
    assert (folder_a/'epoch_0.pth').read_bytes() == epoch0_a
    exp = notebook_experiment(NB)
    run_b = exp.plan({**params, 'data_root': str(b)})
    assert run_b.run_id == both['run_id'].iloc[1]
    shutil.rmtree(ckpt/run_b.run_id); shutil.copytree(folder_a, ckpt/run_b.run_id)
    with pytest.raises(ValueError, match=r'(?s)refusing to resume.*data.content: .* in the folder, .* now'):
        run_b.checkpoints(ckpt)


def test_fingerprint_opens_a_bounded_sample_of_a_large_dataset(tmp_path, monkeypatch):
    for i in range(1000):
        f = tmp_path/'imagenet'/'train'/f'n{i % 10:08d}'/f'img_{i:04d}.JPEG'
        f.parent.mkdir(parents=True, exist_ok=True); f.write_bytes(bytes([i % 256]) * (100 + i))
    opened = []
    real = experiment.content_sample
    monkeypatch.setattr(experiment, 'content_sample', lambda p, *a: opened.append(p) or real(p, *a))
    fp = data_fingerprint(DataRef('imagenet', str(tmp_path), dim='items'))
    assert fp['files'] == 1000 and len(opened) == experiment.SAMPLED_FILES
    f.write_bytes(bytes([7]) * f.stat().st_size)  # the last file is always sampled
    assert data_fingerprint(DataRef('imagenet', str(tmp_path), dim='items'))['hash'] != fp['hash']


PARAMETER_NOTEBOOKS = sorted(p.name for p in (REPO/'nbs').glob('*.ipynb')
                             if any('parameters' in c.get('metadata', {}).get('tags', []) for c in json.loads(p.read_text())['cells']))


@pytest.mark.parametrize('name', PARAMETER_NOTEBOOKS)
def test_papermill_parses_every_parameters_line(name, caplog):
    "papermill reads each line of a parameters cell (an '=' in a comment defeats it): else every run logs 'Unable to parse line' and 'Passed unknown parameter'."
    from papermill.translators import PythonTranslator
    cell = next(c for c in json.loads((REPO/'nbs'/name).read_text())['cells'] if 'parameters' in c.get('metadata', {}).get('tags', []))
    src = ''.join(cell['source'])
    with caplog.at_level('WARNING'): found = PythonTranslator.inspect({'source': src})
    assert not [r.message for r in caplog.records if 'Unable to parse' in r.message]
    assert len(found) == sum(1 for line in src.splitlines() if line[:1].isidentifier()), [p.name for p in found]
