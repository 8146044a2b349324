"Shared fixtures: the studies' published files in ../shared/reference (tests needing them skip when absent)."
import os
from pathlib import Path

import pytest

REFERENCE = Path(os.environ.get('MEDSEGPAPER_REFERENCE', Path(__file__).resolve().parents[2]/'shared'/'reference'))


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: minutes rather than seconds; CI runs them, `-m "not slow"` leaves them out')


@pytest.fixture
def reference():
    "The folder of the studies' published files; the test is skipped when it is absent."
    if not REFERENCE.is_dir(): pytest.skip(f'published reference files not found at {REFERENCE}')
    return REFERENCE
