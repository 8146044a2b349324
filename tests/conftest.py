"Shared fixtures: the studies' published files in ../shared/reference (tests needing them skip when absent), and Chromium for the browser tests (installed through apt where that needs no password)."
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get('MEDSEGPAPER_REFERENCE', Path(__file__).resolve().parents[2]/'shared'/'reference'))


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: minutes rather than seconds; CI runs them, `-m "not slow"` leaves them out')


def clone_entries() -> set[str]:
    "Every untracked or ignored entry of this checkout but byte code (folders collapsed, as `git status` shows them); empty outside git."
    done = subprocess.run(['git', '-C', str(REPO), 'status', '--porcelain', '--ignored'], capture_output=True, text=True)
    if done.returncode: return set()
    return {e for e in done.stdout.splitlines() if '__pycache__' not in e and '.pytest_cache' not in e}


@pytest.fixture(scope='session', autouse=True)
def clone_left_as_it_was():
    "The tests write only under temporary folders: an entry new in the checkout after the session is an error naming it."
    before = clone_entries()
    yield
    new = sorted(clone_entries() - before)
    assert not new, f'the tests left these in the checkout {REPO}: {new}'


@pytest.fixture(scope='session', autouse=True)
def private_cache(tmp_path_factory):
    "Every test and the processes it starts cache decoded arrays in a temporary folder, not in the user's cache."
    old, os.environ['MEDSEGPAPER_CACHE'] = os.environ.get('MEDSEGPAPER_CACHE'), str(tmp_path_factory.mktemp('cache'))
    yield Path(os.environ['MEDSEGPAPER_CACHE'])
    if old is None: os.environ.pop('MEDSEGPAPER_CACHE', None)
    else: os.environ['MEDSEGPAPER_CACHE'] = old


@pytest.fixture
def reference():
    "The folder of the studies' published files; the test is skipped when it is absent."
    if not REFERENCE.is_dir(): pytest.skip(f'published reference files not found at {REFERENCE}')
    return REFERENCE


CHROMIUM_PACKAGES = ('chromium', 'chromium-driver', 'fonts-liberation')
CHROMIUM_INSTALL = f"sudo apt-get install {' '.join(CHROMIUM_PACKAGES)}"


def chromium_paths() -> tuple[str | None, str | None]:
    "Chromium (for kaleido's static images) and its chromedriver (for selenium), each None when absent."
    from medsegpaper.plots import browser_path
    return browser_path(), shutil.which('chromedriver')


def _as_root() -> list[str] | None:
    "The prefix that runs a command as root without a prompt: none for root, `sudo -n` where it needs no password."
    if os.geteuid() == 0: return []
    if shutil.which('sudo') and subprocess.run(['sudo', '-n', 'true'], capture_output=True).returncode == 0: return ['sudo', '-n']
    return None


def install_chromium() -> str | None:
    "Install Debian's Chromium and chromedriver through apt when that needs no password; why not, or None once installed."
    prefix = _as_root()
    if prefix is None: return 'not root and sudo asks for a password'
    if not shutil.which('apt-get'): return 'no apt-get on this machine'
    for cmd in (['apt-get', 'update', '-q'], ['apt-get', 'install', '-y', '-q', '--no-install-recommends', *CHROMIUM_PACKAGES]):
        done = subprocess.run(prefix + ['env', 'DEBIAN_FRONTEND=noninteractive'] + cmd, capture_output=True, text=True)
        if done.returncode: return f"`{' '.join(cmd[:2])}` failed: {done.stderr.strip()[-300:]}"
    return None if all(chromium_paths()) else 'apt-get installed the packages but Chromium or chromedriver is still not found'


@pytest.fixture(scope='session')
def chromium_ready() -> str | None:
    "Chromium and chromedriver present, installed here when they can be: None when ready, else why not."
    if all(chromium_paths()): return None
    return install_chromium()


def require_chromium(why_not: str | None):
    "Skip (one line naming the install command) when Chromium cannot be had; under CI (`CI=true`) fail instead."
    if why_not is None: return
    message = f'needs Chromium and chromedriver ({chromium_ready}): {CHROMIUM_INSTALL}'
    if os.environ.get('CI', '').lower() in ('1', 'true', 'yes'): pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def needs_chromium(chromium_ready):
    "A test that needs Chromium: skipped, or failed under CI, when it cannot be had."
    require_chromium(chromium_ready)
