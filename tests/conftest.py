import os, sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault('PYTHONHASHSEED', '0')
