"Safe by default: a local sweep listens on 127.0.0.1 only, across machines Dask speaks TLS."
import os

import psutil
import pytest

from medsegpaper.sweep_cluster import local_cluster, slurm_cluster, tls_security


def listening(pids) -> list[tuple[int, str, int]]:
    "(pid, address, port) of every TCP socket the processes `pids` listen on."
    return [(pid, c.laddr.ip, c.laddr.port) for pid in pids for c in psutil.Process(pid).net_connections(kind='tcp')
            if c.status == psutil.CONN_LISTEN]


def test_a_local_sweep_cluster_listens_on_localhost_only():
    "The scheduler, its dashboard, the nannies (this process) and the worker processes: every listening socket on 127.0.0.1."
    before = {port for _, _, port in listening([os.getpid()])}
    from distributed import Client
    with local_cluster(2) as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=120)
        workers = client.scheduler_info()['workers']
        pids = [os.getpid(), *(c.pid for c in psutil.Process().children(recursive=True))]
        found = [s for s in listening(pids) if s[0] != os.getpid() or s[2] not in before]
        addresses = [cluster.scheduler_address, *workers, *(w['nanny'] for w in workers.values())]
    assert len(workers) == 2 and len(found) >= 6, found  # scheduler, dashboard, 2 nannies, 2 workers
    assert all(ip == '127.0.0.1' for _, ip, _ in found), found
    assert all(a.startswith('tcp://127.0.0.1:') for a in addresses), addresses


def test_slurm_jobs_reach_their_scheduler_over_tls_only(tmp_path):
    "The job script's workers connect with this sweep's certificate, written to the shared folder; the dashboard listens on 127.0.0.1."
    before = {port for _, _, port in listening([os.getpid()])}
    cluster = slurm_cluster({'cores': 1, 'memory': '1GB'}, tmp_path)
    try:
        script = cluster.job_script()
        assert cluster.scheduler_address.startswith('tls://') and '--protocol tls://' in script, script
        assert f'--tls-key {tmp_path}/' in script and any(tmp_path.iterdir())
        dashboard = int(cluster.dashboard_link.split(':')[-1].split('/')[0])
        assert [ip for _, ip, port in listening([os.getpid()]) if port == dashboard] == ['127.0.0.1']
        assert {port for _, _, port in listening([os.getpid()])} - before - {dashboard} == {int(cluster.scheduler_address.rsplit(':', 1)[1])}
    finally: cluster.close()


def test_a_standing_scheduler_is_reached_with_its_certificates(tmp_path):
    assert tls_security(None) is None
    with pytest.raises(FileNotFoundError, match='certificate files not found'): tls_security({'ca_file': tmp_path/'ca.pem', 'cert': 'c', 'key': 'k'})
    with pytest.raises(ValueError, match='unknown keys'): tls_security({'ca': 'x'})
    for name in ('ca.pem', 'cert.pem', 'key.pem'): (tmp_path/name).write_text('x')
    sec = tls_security({'ca_file': str(tmp_path/'ca.pem'), 'cert': str(tmp_path/'cert.pem'), 'key': str(tmp_path/'key.pem')})
    assert sec.require_encryption and sec.tls_ca_file == str(tmp_path/'ca.pem')


def test_a_sweep_kernel_is_reached_through_private_unix_sockets(tmp_path):
    "execute_run's kernel uses Jupyter's ipc transport, its sockets in the runtime folder, none in the working folder."
    import nbformat
    from medsegpaper.sweep_cluster import execute_run
    code = ("from ipykernel.kernelapp import IPKernelApp; import os\n"
            "app = IPKernelApp.instance(); print(app.transport, app.ip, sorted(os.listdir('.')))")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('x = 1', metadata={'tags': ['parameters']}),
                                                   nbformat.v4.new_code_cell(code)]), tmp_path/'nb.ipynb')
    (tmp_path/'cwd').mkdir()
    res = execute_run(tmp_path/'nb.ipynb', tmp_path/'run', {}, cwd=tmp_path/'cwd')
    assert res['state'] == 'done', res
    transport, ip, listed = nbformat.read(res['notebook'], as_version=4).cells[1].outputs[0]['text'].split(' ', 2)
    from jupyter_core.paths import jupyter_runtime_dir
    assert transport == 'ipc' and ip.startswith(jupyter_runtime_dir()) and listed.strip() == '[]', (transport, ip, listed)


class _Planted:
    "An object whose unpickling runs a command: it would create the file `marker`."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))


def test_a_planted_pickle_of_embeddings_is_refused_without_running(tmp_path):
    import pickle
    from medsegpaper.studies.segae004 import load_text_embeddings
    marker, bad = tmp_path/'ran', tmp_path/'label_embedding.pkl'
    bad.write_bytes(pickle.dumps({1: _Planted(marker)}))
    with pytest.raises(ValueError, match=r'posix.system is not allowed|os.system is not allowed'): load_text_embeddings(bad)
    assert not marker.exists()


def test_planted_model_files_are_refused_without_running(tmp_path):
    "A SegAE model file (`medsegpaper-segae --model`) and a training checkpoint (fastai's loader, as every resume uses) that would run code."
    import torch
    from fastai.learner import load_model
    from medsegpaper.studies.segae004 import QualityEstimator
    marker, bad = tmp_path/'ran', tmp_path/'segae.pth'
    torch.save({'config': {}, 'state': _Planted(marker)}, bad)
    with pytest.raises(ValueError, match='not a SegAE model saved by QualityEstimator.save'): QualityEstimator.load(bad)
    with pytest.raises(Exception, match='Weights only load failed'): load_model(bad, torch.nn.Linear(1, 1), None, with_opt=False)
    assert not marker.exists()


def test_a_second_sweep_on_a_busy_protocol_stops_naming_the_holder(tmp_path):
    "One writer per protocol output folder; `status` still answers beside it."
    import socket, subprocess, sys, time
    from pathlib import Path
    from medsegpaper.sweep import sweep_cli
    repo = Path(__file__).resolve().parents[1]
    proto = tmp_path/'p.yaml'
    proto.write_text(f"notebook: {repo/'nbs'/'train.ipynb'}\nresults: {{results: {tmp_path/'scores.csv'}}}\n"
                     f"parameters: {{epochs: 1}}\ngrid: {{seed: [0]}}\nout: {tmp_path/'runs'}\n")
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time\nfrom medsegpaper.io import held_lock\n'
                               'with held_lock(sys.argv[1]): print("held", flush=True); time.sleep(600)', str(tmp_path/'runs'/'sweep.lock')],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        import contextlib, io
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()): rc = sweep_cli(['run', str(proto)])
        assert rc == 1 and f'in use by pid {holder.pid} on {socket.gethostname()}' in err.getvalue(), err.getvalue()
        with contextlib.redirect_stdout(io.StringIO()) as out: assert sweep_cli(['status', str(proto)]) == 0
        assert 'pending' in out.getvalue()
    finally:
        holder.kill(); holder.wait()
    assert not (tmp_path/'scores.csv').exists()
