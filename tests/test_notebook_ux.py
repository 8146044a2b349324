"Notebooks as readers see them: the executed main job shows no warning or error output, and a static image of each plotly figure."
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from .conftest import chromium_paths, require_chromium
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
def main_job(tmp_path_factory, chromium_ready):
    "nbs/train.ipynb executed by papermill with tiny parameters, as a reader would open it (after Chromium is installed where it can be)."
    folder = tmp_path_factory.mktemp('main_job')
    run_train(folder, **TINY, device='cpu')
    return nbformat.read(folder/'out.ipynb', as_version=4)


def test_main_job_shows_no_warning_or_error(main_job):
    assert NB.exists() and not stray_outputs(main_job), stray_outputs(main_job)


def test_each_plotly_figure_leaves_a_static_image(needs_chromium, main_job):
    figures = [out.data for cell in main_job.cells for out in cell.get('outputs', []) if PLOTLY in out.get('data', {})]
    assert len(figures) == 3 and all(f['image/png'] for f in figures), [list(f) for f in figures]


def free_port() -> int:
    "A TCP port nothing listens on now."
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def jupyterlab(tmp_path_factory):
    "JupyterLab serving a fresh folder on localhost (its own config and data folders); yields (url, token, folder)."
    folder, home = tmp_path_factory.mktemp('lab'), tmp_path_factory.mktemp('lab_home')
    port, token = free_port(), secrets.token_hex(16)
    settings = home/'settings'/'@jupyterlab'/'apputils-extension'
    settings.mkdir(parents=True)
    (settings/'notification.jupyterlab-settings').write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home/'config'), JUPYTER_DATA_DIR=str(home/'data'),
               JUPYTER_RUNTIME_DIR=str(home/'runtime'), JUPYTERLAB_SETTINGS_DIR=str(home/'settings'),
               JUPYTERLAB_WORKSPACES_DIR=str(home/'workspaces'))
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ServerApp.ip=127.0.0.1', f'--ServerApp.port={port}',
           '--ServerApp.port_retries=0', f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={folder}',
           '--LabApp.news_url=', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate'] + ['--allow-root'] * (os.geteuid() == 0)
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(home/'server.log', 'w'))
    url = f'http://127.0.0.1:{port}'
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f'{url}/api/status?token={token}', timeout=2)
                break
            except OSError:
                assert server.poll() is None, (home/'server.log').read_text()[-3000:]
                time.sleep(0.5)
        else: pytest.fail(f'JupyterLab did not answer in 60 s: {(home/"server.log").read_text()[-3000:]}')
        yield url, token, folder
    finally:
        server.terminate()
        server.wait(30)


@pytest.fixture(scope='module')
def chromium(chromium_ready):
    "Debian's Chromium, headless, driven by its chromedriver (no download: selenium is given both paths)."
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    require_chromium(chromium_ready)
    binary, driver = chromium_paths()
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--window-size=1400,1000'):
        opts.add_argument(arg)
    browser = webdriver.Chrome(options=opts, service=Service(driver))
    yield browser
    browser.quit()


@pytest.mark.slow
def test_jupyterlab_in_chromium_draws_the_figures_and_shows_no_error(needs_chromium, main_job, jupyterlab, chromium):
    "The executed main job opened in JupyterLab: each figure shows its PNG, turns into a plotly.js graph on hover, and no output is an error."
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    url, token, folder = jupyterlab
    nbformat.write(main_job, folder/'train_out.ipynb')
    chromium.get(f'{url}/lab/tree/train_out.ipynb?token={token}')
    images = lambda b: b.find_elements(By.CSS_SELECTOR, '.jp-RenderedPlotly img.plot-img')
    loaded = lambda b: [i for i in images(b) if b.execute_script('return arguments[0].complete && arguments[0].naturalWidth', i)]
    WebDriverWait(chromium, 60, poll_frequency=1).until(lambda b: len(loaded(b)) == 3)
    assert len(chromium.find_elements(By.CSS_SELECTOR, '.jp-OutputArea-output')) >= 8  # counts, batch, progress, scores, curve, overlays
    errors = chromium.find_elements(By.CSS_SELECTOR, '[data-mime-type="application/vnd.jupyter.stderr"]')
    assert not errors, [e.text[:300] for e in errors]
    for image in images(chromium):  # jupyterlab-plotly draws the interactive graph when the pointer enters the image
        chromium.execute_script("arguments[0].scrollIntoView(); arguments[0].dispatchEvent(new MouseEvent('mouseenter'))", image)
    graphs = lambda b: b.find_elements(By.CSS_SELECTOR, '.jp-RenderedPlotly.js-plotly-plot')
    WebDriverWait(chromium, 60, poll_frequency=1).until(lambda b: len(graphs(b)) == 3 and all(
        g.find_elements(By.CSS_SELECTOR, '.main-svg .hm, .main-svg .trace') for g in graphs(b)))  # heatmaps, scatter traces
    assert all(g.size['width'] > 100 and g.size['height'] > 100 for g in graphs(chromium))


def test_nbdev_clean_keeps_example_outputs(tmp_path):
    path = tmp_path/'example.ipynb'
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('1 + 1', execution_count=3, outputs=[
        nbformat.v4.new_output('execute_result', data={'text/plain': '2'}, execution_count=3)])]), path)
    clean = [str(Path(sys.executable).parent/'nbdev_clean'), '--fname', str(path)]
    subprocess.run(clean, cwd=NB.parents[1], check=True)  # with the repository's settings.ini
    cell = nbformat.read(path, as_version=4).cells[0]
    assert cell.outputs[0].data == {'text/plain': '2'} and cell.execution_count is None


@pytest.mark.parametrize('path', sorted(NB.parent.glob('*.ipynb')), ids=lambda p: p.name)
def test_kept_outputs_show_no_warning_or_error(path):
    assert not stray_outputs(nbformat.read(path, as_version=4))
