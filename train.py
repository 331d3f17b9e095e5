"""Train a character-level transformer from a checkout: `python train.py --help` (installed: charlens-train).
The trainer's code is charlens/train.py and charlens/training/."""
import sys

from charlens.cli import train

if __name__ == "__main__":
    sys.exit(train())
