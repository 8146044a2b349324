"Issue 24's bad inputs not covered beside their modules: the commands' error lines and --debug, large plans, the planner's run ids, meta.csv, batch sizes."
import itertools, json, random

import pandas as pd
import pytest
from pathlib import Path

from medsegpaper.cli import sweep_main, data_main
from medsegpaper.experiment import notebook_experiment
from medsegpaper.io import DataError
from medsegpaper import datasets as D
from medsegpaper.sweep import load_protocol, plan_runs, protocol_runs, run_id

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO/'nbs'/'train.ipynb'


def protocol(folder: Path, grid: str, name='p.yaml') -> Path:
    (folder/name).write_text(f"notebook: {TRAIN}\nresults: {{results: {folder/'r.csv'}}}\nout: {folder/'runs'}\ngrid: {grid}\n")
    return folder/name


# the commands: one error line, --debug for the traceback

def test_missing_protocol_is_one_error_line_and_exit_1(tmp_path, capsys):
    assert sweep_main(['status', str(tmp_path/'none.yaml')]) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: ') and err.count('\n') == 1 and 'none.yaml' in err and 'Traceback' not in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        sweep_main(['status', str(tmp_path/'none.yaml'), '--debug'])


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as e: sweep_main(['run', 'p.yaml', '--workers', '-1'])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e: data_main(['check'])
    assert e.value.code == 2


# large plans: --yes to run, a summary to look at

def test_a_plan_above_the_limit_needs_yes(tmp_path, capsys):
    p = protocol(tmp_path, '{seed: ' + json.dumps(list(range(200))) + ', epochs: ' + json.dumps(list(range(1, 101))) + '}')
    assert sweep_main(['run', str(p)]) == 1
    err = capsys.readouterr().err
    assert 'plans 20,000 runs, more than 10,000; pass --yes' in err, err
    assert not (tmp_path/'runs').exists()  # refused before anything was written


def test_a_large_dry_run_prints_a_summary_not_every_run(tmp_path, capsys):
    p = protocol(tmp_path, '{seed: ' + json.dumps(list(range(50))) + ', epochs: [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]}')
    assert sweep_main(['run', str(p), '--dry-run']) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ['500 runs: 0 done, 0 running, 50 failed, 450 pending', '  50 x 1 invalid parameter: epochs must be >= 1, got 0'], out


def test_an_empty_grid_axis_is_an_error(tmp_path, capsys):
    assert sweep_main(['run', str(protocol(tmp_path, '{seed: []}')), '--dry-run']) == 1
    assert 'grid: seed is an empty list' in capsys.readouterr().err


# the fast planner gives the run ids Experiment.plan gives

@pytest.mark.parametrize('path', sorted((REPO/'nbs'/'protocols').glob('*.yaml')), ids=lambda p: p.stem)
def test_planner_run_ids_equal_experiment_plan(path):
    p = load_protocol(path)
    exp, cache = notebook_experiment(p.notebook), {}
    want = {}
    for values in protocol_runs(p):
        try: rid = exp.plan(values, cache).run_id
        except (ValueError, OSError): rid = f'invalid-{run_id(values)}'
        want.setdefault(rid, values)
    assert [(r.run_id, r.params) for r in plan_runs(p, cache)] == list(want.items())


def test_planner_agrees_on_random_train_grids(tmp_path):
    rng = random.Random(0)
    values = {'lr': [0.001, 0.01, -1], 'epochs': [1, 2], 'loss': ['ce', 'dice', 'nope'], 'flip': ['h', 'none'],
              'dataset_opts': [{}, {'slices': 3}], 'pretrained': ['', str(TRAIN)], 'device': ['cpu', 'auto'], 'img_size': [32, 48]}
    for trial in range(4):
        names = rng.sample(sorted(values), 4)
        p = load_protocol(protocol(tmp_path, json.dumps({n: values[n] for n in names}), f'p{trial}.yaml'))
        exp = notebook_experiment(TRAIN)
        for r in plan_runs(p):
            try: assert r.run_id == exp.plan(r.params).run_id and not r.error
            except ValueError as e: assert r.run_id.startswith('invalid-') and r.error == str(e)


# meta.csv of TotalSegmentator

@pytest.mark.parametrize('content, problem', [(b'image_id;split\n\xff\xfe s0000;train\n', 'not UTF-8 text'),
                                              (b'', 'not a table')])
def test_undecodable_meta_csv_names_the_file(tmp_path, content, problem):
    d = D.write_totalsegmentator_sample(tmp_path, n=4, size=16, depth=4)
    (d/'meta.csv').write_bytes(content)
    with pytest.raises(DataError, match=problem) as e: D.load_3d('totalsegmentator', 'train', tmp_path, cache=False)
    assert e.value.path == d/'meta.csv'


# a batch size above the training set is recorded as used

@pytest.mark.slow
def test_batch_size_above_the_training_set_is_recorded_as_used(tmp_path):
    import papermill as pm
    pm.execute_notebook(str(TRAIN), str(tmp_path/'out.ipynb'), cwd=str(REPO), progress_bar=False,
                        parameters=dict(epochs=1, img_size=32, batch_size=100000, width=0.0625, results=str(tmp_path/'r.csv')))
    row = pd.read_csv(tmp_path/'r.csv').iloc[0]
    assert row['batch_size'] == 100000 and row['batches_per_epoch'] == 1 and row['batch_size_used'] < 100000
