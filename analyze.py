"""Analyse a checkout's checkpoints: `python analyze.py --help` (installed: charlens-analyze).
The analyzer's code is charlens/analyze.py and charlens/analysis/."""
import sys

from charlens.cli import analyze

if __name__ == "__main__":
    sys.exit(analyze())
