"Process-level tests of `medsegpaper.results`: concurrent writers, a writer killed mid-write, ids across processes."
import multiprocessing as mp, os, signal, subprocess, sys, time
from pathlib import Path

from medsegpaper.results import ResultsTable, run_id

REPO = Path(__file__).resolve().parents[1]
N_WRITERS, N_OWN, N_SHARED = 4, 25, 5


def _writer(csv, vol_csv, w, barrier):
    table, vols = ResultsTable(csv), ResultsTable(vol_csv, key=('run_id', 'filename'))
    barrier.wait()
    for i in range(N_OWN):
        table.upsert(dict(run_id=f'w{w}-{i}', writer=w, i=i))
        if i < N_SHARED: table.upsert(dict(run_id=f'shared-{i}', writer=w, i=i))
        vols.replace_run('shared-run', [dict(filename=f'{f}.nii.gz', writer=w, i=i) for f in range(3)])


def test_concurrent_writers_lose_and_duplicate_nothing(tmp_path):
    csv, vol_csv = tmp_path/'study.csv', tmp_path/'volumes.csv'
    ctx = mp.get_context('spawn')
    barrier = ctx.Barrier(N_WRITERS)
    procs = [ctx.Process(target=_writer, args=(csv, vol_csv, w, barrier)) for w in range(N_WRITERS)]
    for p in procs: p.start()
    for p in procs: p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * N_WRITERS

    df = ResultsTable(csv).read()
    own = {f'w{w}-{i}' for w in range(N_WRITERS) for i in range(N_OWN)}
    shared = {f'shared-{i}' for i in range(N_SHARED)}
    assert len(df) == len(own) + len(shared)
    assert df.run_id.is_unique and set(df.run_id) == own | shared
    mine = df[df.run_id.isin(own)]
    assert all(r.run_id == f'w{r.writer}-{r.i}' for r in mine.itertuples())
    assert set(df[df.run_id.isin(shared)].writer) <= set(range(N_WRITERS))

    vols = ResultsTable(vol_csv, key=('run_id', 'filename')).read()
    assert sorted(vols.filename) == [f'{f}.nii.gz' for f in range(3)]
    assert vols.writer.nunique() == 1 and vols.i.nunique() == 1
    assert not list(tmp_path.glob('.*.tmp'))


KILLED_WRITER = """
import sys, time
from pathlib import Path
from medsegpaper.results import ResultsTable
csv, ready = Path(sys.argv[1]), Path(sys.argv[2])
table = ResultsTable(csv)
def stall(tmp):
    ready.write_text(str(tmp))
    time.sleep(600)
table._before_replace = stall
table.upsert([dict(run_id=f'new-{i}', dice=0.5) for i in range(20000)])
"""


def test_writer_killed_mid_write_leaves_old_table(tmp_path):
    csv, ready = tmp_path/'study.csv', tmp_path/'ready'
    table = ResultsTable(csv)
    table.upsert([dict(run_id=f'old-{i}', dice=0.1 * i) for i in range(3)])
    before = csv.read_bytes()

    proc = subprocess.Popen([sys.executable, '-c', KILLED_WRITER, str(csv), str(ready)], cwd=REPO)
    deadline = time.monotonic() + 120
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline: time.sleep(0.05)
    assert ready.exists(), f'writer never reached the rename (exit code {proc.poll()})'
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL

    partial = Path(ready.read_text())
    assert partial.exists() and partial.parent == tmp_path and partial.name.endswith('.tmp')
    assert 'new-19999' in partial.read_text()
    assert csv.read_bytes() == before
    df = table.read()
    assert df.run_id.tolist() == ['old-0', 'old-1', 'old-2'] and not table.has_run('new-0')

    table.upsert(dict(run_id='after', dice=1.0))
    assert table.read().run_id.tolist() == ['old-0', 'old-1', 'old-2', 'after']
    assert not partial.exists()


RESTARTED_RUN = """
import sys
from medsegpaper.results import ResultsTable, track_run
params = dict(lr=1e-3, classes={'wm', 'gm', 'csf', 'bg'}, model='unet', sizes=(64, 128))
with track_run(params, 'cpu') as run: pass
ResultsTable(sys.argv[1]).upsert(run.row(dice_mean=float(sys.argv[2])))
print(run['run_id'])
"""


def test_run_id_stable_across_processes_and_rerun_replaces_row(tmp_path):
    csv = tmp_path/'study.csv'
    ids = []
    for seed, dice in (('1', 0.5), ('2', 0.6), ('12345', 0.7)):
        env = {**os.environ, 'PYTHONHASHSEED': seed}
        out = subprocess.run([sys.executable, '-c', RESTARTED_RUN, str(csv), str(dice)], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        ids.append(out.stdout.strip())
    expected = run_id(dict(model='unet', sizes=[64, 128], lr=0.001, classes=['bg', 'csf', 'gm', 'wm']))
    assert ids == [expected] * 3
    df = ResultsTable(csv).read()
    assert df.run_id.tolist() == [expected] and df.dice_mean.tolist() == [0.7]
