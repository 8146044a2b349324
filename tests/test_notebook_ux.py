"Notebooks as readers see them: the executed main job shows no warning or error output, and a static image of each plotly figure."
import nbformat
import pytest

from medsegpaper.plots import browser_path
from .test_train import NB, TINY, run_train

PLOTLY = 'application/vnd.plotly.v1+json'


def stray_outputs(nb) -> list[str]:
    "Every output of `nb` a reader should not see: stderr text, errors, and any text mentioning a warning."
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get('outputs', []):
            text = out.get('text', '') or out.get('data', {}).get('text/plain', '')
            if out.output_type == 'error': found.append(f'cell {i}: {out.ename}: {out.evalue}')
            elif out.get('name') == 'stderr' or 'Warning' in text: found.append(f'cell {i}: {text[:300]}')
    return found


def test_stray_outputs_finds_warnings_and_errors():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[
        nbformat.v4.new_output('stream', name='stderr', text='x.py:1: FutureWarning: old\n'),
        nbformat.v4.new_output('stream', name='stdout', text='UserWarning: printed\n'),
        nbformat.v4.new_output('error', ename='ValueError', evalue='bad', traceback=[]),
        nbformat.v4.new_output('stream', name='stdout', text='fine\n')])])
    assert [s.split(':')[1] for s in stray_outputs(nb)] == [' x.py', ' UserWarning', ' ValueError']


@pytest.fixture(scope='module')
def main_job(tmp_path_factory):
    "nbs/train.ipynb executed by papermill with tiny parameters, as a reader would open it."
    folder = tmp_path_factory.mktemp('main_job')
    run_train(folder, **TINY, device='cpu')
    return nbformat.read(folder/'out.ipynb', as_version=4)


def test_main_job_shows_no_warning_or_error(main_job):
    assert NB.exists() and not stray_outputs(main_job), stray_outputs(main_job)


def test_each_plotly_figure_leaves_a_static_image(main_job):
    assert browser_path(), 'no Chromium for the static images: apt-get install chromium (or set BROWSER_PATH)'
    figures = [out.data for cell in main_job.cells for out in cell.get('outputs', []) if PLOTLY in out.get('data', {})]
    assert len(figures) == 3 and all(f['image/png'] for f in figures), [list(f) for f in figures]
