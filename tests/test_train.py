"The main job end to end: papermill runs of nbs/train.ipynb with non-default parameters, bad input, repeatability."
import zipfile

import nbformat
import pandas as pd
import papermill as pm
import pytest
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NB = REPO/'nbs'/'train.ipynb'
TINY = dict(epochs=1, img_size=32, batch_size=4, width=0.0625)


def run_train(tmp_path, name='out', csv='scores.csv', **params):
    results = tmp_path/csv
    pm.execute_notebook(str(NB), str(tmp_path/f'{name}.ipynb'), parameters={'results': str(results), **params},
                        cwd=str(REPO), progress_bar=False)
    return pd.read_csv(results)


def test_non_default_parameters_land_in_the_row(tmp_path):
    params = dict(TINY, model='timm_unet', encoder='resnet18', loss='focal', optimizer='sgd', schedule='poly',
                  lr=0.01, flip='v', rotate=0.0, seed=3, device='cpu')
    df = run_train(tmp_path, **params)
    assert len(df) == 1
    row = df.iloc[0]
    for k, v in params.items():
        if k != 'device': assert row[k] == v, (k, row[k], v)
    assert row['device'] == 'cpu' and row['dataset'] == 'brain'
    assert 0 <= row['dice_mean'] <= 1 and 0 <= row['accuracy'] <= 1
    assert {'dice_grey_matter', 'dice_white_matter', 'hd95_mean', 'jaccard_mean', 'wall_s', 'git_commit'} <= set(df.columns)


def test_unknown_choice_fails_with_the_valid_ones(tmp_path):
    with pytest.raises(pm.PapermillExecutionError) as e:
        run_train(tmp_path, **TINY, optimizer='lbfgs')
    assert "Unknown optimizer 'lbfgs'; valid choices: sgd, adam, adamw" in str(e.value)
    with pytest.raises(pm.PapermillExecutionError) as e:
        run_train(tmp_path, **TINY, model='segformer')
    assert "valid choices: unet, timm_unet, attention_unet" in str(e.value)
    assert not (tmp_path/'scores.csv').exists()


def test_missing_dataset_names_path_layout_and_source(tmp_path):
    empty = tmp_path/'empty_root'
    empty.mkdir()
    with pytest.raises(pm.PapermillExecutionError) as e:
        run_train(tmp_path, **TINY, dataset='acdc', data_root=str(empty))
    msg = str(e.value)
    assert str(empty/'ACDC') in msg, msg
    assert 'patientXXX' in msg and 'http' in msg, msg


def test_same_seed_same_metrics_on_cpu(tmp_path):
    params = dict(TINY, epochs=2, seed=11, device='cpu', rotate=20.0, flip='hv')
    a = run_train(tmp_path, 'a', 'a.csv', **params).iloc[0]
    b = run_train(tmp_path, 'b', 'b.csv', **params).iloc[0]
    metrics = [c for c in a.index if c.startswith(('dice_', 'jaccard_', 'hd95_')) or c == 'accuracy']
    assert len(metrics) >= 7
    assert a['run_id'] == b['run_id']
    for m in metrics: assert a[m] == b[m], (m, a[m], b[m])
    c = run_train(tmp_path, 'c', 'c.csv', **{**params, 'seed': 12}).iloc[0]
    assert any(c[m] != a[m] for m in metrics)


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    "The last checkpoint cut short (a run killed while copying, a full disk): named in a warning, the run resumes from the one before."
    params = dict(TINY, epochs=2, seed=5, device='cpu', rotate=15.0, checkpoint_dir=str(tmp_path/'ckpt'))
    full = run_train(tmp_path, 'full', 'full.csv', **params).iloc[0]
    run_dir = tmp_path/'ckpt'/full['run_id']
    assert sorted(p.name for p in run_dir.iterdir()) == ['epoch_0.pth', 'epoch_0.rng', 'epoch_1.pth', 'epoch_1.rng', 'run.json']
    last = run_dir/'epoch_1.pth'
    last.write_bytes(last.read_bytes()[:1000])
    epoch0 = {n: ((run_dir/n).stat().st_mtime_ns, (run_dir/n).read_bytes()) for n in ('epoch_0.pth', 'epoch_0.rng')}
    resumed = run_train(tmp_path, 'resumed', 'resumed.csv', **params).iloc[0]
    outputs = ''.join(o.get('text', '') for c in nbformat.read(tmp_path/'resumed.ipynb', as_version=4).cells for o in c.get('outputs', []))
    assert f'CheckpointWarning: {last}: damaged checkpoint' in outputs, outputs[-2000:]
    assert zipfile.ZipFile(last).testzip() is None  # epoch 1 trained again and saved whole
    for n, (mtime, data) in epoch0.items():  # epoch 0 was loaded, not trained again
        assert (run_dir/n).stat().st_mtime_ns == mtime and (run_dir/n).read_bytes() == data, n
    for m in ('dice_mean', 'jaccard_mean', 'accuracy', 'dice_grey_matter', 'dice_white_matter'):
        assert resumed[m] == full[m], (m, resumed[m], full[m])


def test_bf16_on_the_cpu_scores_the_defaults_as_fp32_does(tmp_path):
    "The main job at its defaults with `-p amp bf16` on the CPU: the same run (id), recorded as bf16, mean Dice within 0.02 of fp32's."
    fp32 = run_train(tmp_path, 'fp32', 'fp32.csv', device='cpu', amp='fp32').iloc[0]
    bf16 = run_train(tmp_path, 'bf16', 'bf16.csv', device='cpu', amp='bf16').iloc[0]
    assert (fp32['amp'], bf16['amp']) == ('fp32', 'bf16')
    assert bf16['run_id'] == fp32['run_id'] and fp32['run_id'] in set(pd.read_csv(REPO/'results'/'train_scores.csv')['run_id'])  # ids unchanged
    assert fp32['dice_mean'] > 0.8, fp32['dice_mean']
    assert abs(bf16['dice_mean'] - fp32['dice_mean']) <= 0.02, (bf16['dice_mean'], fp32['dice_mean'])
