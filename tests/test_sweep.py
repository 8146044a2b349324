"Sweeps end to end: tiny nbs/train.ipynb runs on a local Dask cluster, a client killed mid-sweep and run again, an invalid grid cell, a kernel that fails to start, SLURM's job script."
import json, os, signal, subprocess, sys, textwrap, time
from pathlib import Path

import dask
import nbformat
import pandas as pd
import pytest

from medsegpaper.sweep import load_protocol, plan_runs
from medsegpaper.sweep_cluster import slurm_cluster

REPO = Path(__file__).resolve().parents[1]
SWEEP = Path(sys.executable).parent/'medsegpaper-sweep'
TINY = dict(epochs=1, img_size=32, batch_size=4, width=0.0625, device='cpu')


def write_protocol(folder, notebook=REPO/'nbs'/'train.ipynb', **spec):
    path = folder/'protocol.yaml'
    path.write_text(json.dumps({'notebook': str(notebook), 'results': {'results': str(folder/'scores.csv')},
                                'out': str(folder/'runs'), **spec}))
    return path


def sweep(*argv, env=None):
    return subprocess.run([str(SWEEP), *map(str, argv)], cwd=REPO, capture_output=True, text=True, env=env, timeout=900)


def status(folder):
    return pd.read_csv(folder/'runs'/'sweep_status.csv', dtype={'run_id': str}, keep_default_na=False).set_index('run_id')


def test_sweep_killed_and_run_again_writes_every_row_once_and_records_the_invalid_cell(tmp_path):
    "Six tiny runs on 2 local workers and one cell with lr=-0.01: the client is SIGKILLed after two runs are merged; run again, it finishes the rest."
    proto = write_protocol(tmp_path, parameters=TINY, grid={'seed': [1, 2, 3], 'lr': [0.01, 0.02]}, include=[{'seed': 4, 'lr': -0.01}])
    runs = plan_runs(load_protocol(proto))
    valid = {r.run_id for r in runs if not r.error}
    assert len(runs) == 7 and len(valid) == 6
    scores = tmp_path/'scores.csv'
    client = subprocess.Popen([str(SWEEP), 'run', str(proto), '--workers', '2'], cwd=REPO, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while not (scores.exists() and len(pd.read_csv(scores)) >= 2):
            assert client.poll() is None and time.time() < deadline, 'the sweep ended or stalled before two runs were merged'
            time.sleep(0.5)
        client.send_signal(signal.SIGKILL)
        client.wait()
        before = pd.read_csv(scores)
        assert 2 <= len(before) < 6 and before.run_id.is_unique and set(before.run_id) <= valid
        time.sleep(3)  # the killed client's workers exit with it, their kernels a second later

        again = sweep('run', proto, '--workers', '2')
        assert again.returncode == 1, again.stderr[-3000:]  # the invalid cell failed
        after = pd.read_csv(scores)
        assert sorted(after.run_id) == sorted(valid)  # every run once: none lost, none twice
        merged = after.set_index('run_id').loc[before.run_id]
        assert merged.start.tolist() == before.start.tolist()  # runs merged before the kill were not run again
        st = status(tmp_path)
        assert (st.loc[list(valid), 'state'] == 'done').all()
        bad = st.drop(index=list(valid))
        assert bad.state.tolist() == ['failed'] and 'lr must be > 0, got -0.01' in bad.error.iloc[0]
        for rid in valid:
            assert (tmp_path/'runs'/rid/'train.ipynb').is_file() and st.loc[rid, 'notebook'] == str(tmp_path/'runs'/rid/'train.ipynb')
        shown = sweep('status', proto)
        assert shown.returncode == 0 and '7 runs: 6 done, 0 running, 1 failed, 0 pending' in shown.stdout, shown.stdout
    finally:
        if client.poll() is None: os.killpg(client.pid, signal.SIGKILL)


TINY_NOTEBOOK = [
    ('x = 1                # any integer\nresults = "r.csv"    # results table', ['parameters']),
    ('from medsegpaper.experiment import experiment\nexp = experiment(globals())', []),
    ('from medsegpaper.results import ResultsTable\nwith exp.track("cpu") as rec: pass\nResultsTable(results).upsert(rec.row(y=2 * x))', [])]

FLAKY = textwrap.dedent('''
    "A kernel whose first start in a sweep fails: it exits before the kernel starts, as a kernel losing a port race does."
    import os, sys
    try: os.mkdir(sys.argv[1])
    except FileExistsError: os.execv(sys.executable, [sys.executable, '-m', 'ipykernel_launcher', *sys.argv[2:]])
    sys.exit(3)
''')


def test_kernel_start_failure_is_retried(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src, metadata={'tags': tags}) for src, tags in TINY_NOTEBOOK])
    nb.metadata['kernelspec'] = {'name': 'flaky', 'display_name': 'flaky', 'language': 'python'}
    nbformat.write(nb, tmp_path/'tiny.ipynb')
    spec = tmp_path/'jupyter'/'kernels'/'flaky'
    spec.mkdir(parents=True)
    (tmp_path/'flaky.py').write_text(FLAKY)
    (spec/'kernel.json').write_text(json.dumps({'display_name': 'flaky', 'language': 'python', 'argv': [
        sys.executable, str(tmp_path/'flaky.py'), str(tmp_path/'started_once'), '-f', '{connection_file}']}))
    proto = write_protocol(tmp_path, tmp_path/'tiny.ipynb', kernel='flaky', grid={'x': [1, 2]})
    done = sweep('run', proto, '--workers', '1', env={**os.environ, 'JUPYTER_PATH': str(tmp_path/'jupyter')})
    assert done.returncode == 0, done.stderr[-3000:]
    st = status(tmp_path)
    assert st.state.tolist() == ['done', 'done'] and sorted(st.attempts) == [1, 2]
    assert sorted(pd.read_csv(tmp_path/'scores.csv').y) == [2, 4]


def test_slurm_job_script_from_the_protocol(tmp_path):
    "The full protocol's SLURM settings: one GPU, 8 CPUs and one Dask thread per job, this environment's python, TLS."
    cluster = slurm_cluster(load_protocol(REPO/'nbs'/'protocols'/'fbr_full.yaml').cluster['slurm'], tmp_path)
    try: script = cluster.job_script()
    finally: cluster.close()
    for line in ('#SBATCH --gres=gpu:1', '#SBATCH --cpus-per-task=8', '#SBATCH --mem=30G', '#SBATCH -t 12:00:00',
                 f'{Path(sys.executable).parent}/python', '-m distributed.cli.dask_worker tls://', '--protocol tls://', '--nthreads 1'):
        assert line in script, (line, script)


def test_slurm_settings_from_dask_config(tmp_path):
    "Without a cluster: section the settings come from dask's jobqueue.slurm configuration."
    with dask.config.set({'jobqueue.slurm.queue': 'long', 'jobqueue.slurm.cores': 2, 'jobqueue.slurm.memory': '8GB',
                          'jobqueue.slurm.job-extra-directives': ['--constraint=a100']}):
        cluster = slurm_cluster(shared_dir=tmp_path)
        try: script = cluster.job_script()
        finally: cluster.close()
    for line in ('#SBATCH -p long', '#SBATCH --cpus-per-task=2', '#SBATCH --mem=8G', '#SBATCH --constraint=a100', '--nworkers 2'):
        assert line in script, (line, script)


def test_slurm_without_sbatch_stops_at_once(tmp_path):
    proto = write_protocol(tmp_path, parameters=TINY, grid={'seed': [1]})
    env = {**os.environ, 'PATH': str(Path(sys.executable).parent)}
    out = sweep('run', proto, '--cluster', 'slurm', env=env)
    assert out.returncode == 1 and "sbatch, which is not on this machine's PATH" in out.stderr, out.stderr[-2000:]


@pytest.mark.slow
def test_done_comes_from_the_results_table_itself(tmp_path):
    "The status file is a log: a deleted table is merged back from the run folders, a run whose rows and folder are gone runs again, alone; a garbled table is an error naming it."
    proto = write_protocol(tmp_path, parameters=TINY, grid={'seed': [0, 1, 2]})
    assert sweep('run', proto, '--workers', '2').returncode == 0
    table = tmp_path/'scores.csv'
    rows = pd.read_csv(table, dtype={'run_id': str})
    assert len(rows) == 3 and set(status(tmp_path).state) == {'done'}
    first = {rid: (tmp_path/'runs'/rid/'train.ipynb').stat().st_mtime_ns for rid in rows.run_id}

    table.unlink()  # deleted: nothing is done, and every run's folder still holds its rows
    assert 'pending' in sweep('status', proto).stdout
    assert sweep('run', proto, '--workers', '2').returncode == 0
    assert sorted(pd.read_csv(table, dtype={'run_id': str}).run_id) == sorted(rows.run_id)
    assert {rid: (tmp_path/'runs'/rid/'train.ipynb').stat().st_mtime_ns for rid in rows.run_id} == first  # merged, not rerun

    gone = rows.run_id[1]
    rows[rows.run_id != gone].to_csv(table, index=False)  # one run's rows lost, and its folder
    import shutil; shutil.rmtree(tmp_path/'runs'/gone)
    assert sweep('run', proto, '--workers', '2').returncode == 0
    again = {rid: (tmp_path/'runs'/rid/'train.ipynb').stat().st_mtime_ns for rid in rows.run_id}
    assert [rid for rid in rows.run_id if again[rid] != first[rid]] == [gone]
    assert len(pd.read_csv(table)) == 3

    table.write_text(table.read_text()[:len(table.read_text()) // 2])  # cut mid-row
    out = sweep('status', proto)
    assert out.returncode == 1 and f'Results file {table} is unreadable or corrupt' in out.stderr, out.stderr[-2000:]
