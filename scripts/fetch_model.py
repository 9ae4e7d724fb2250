"""Fetch the demo/test model into the model cache and print its path (a no-op when already there)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.model.demo_model import fetch_demo_model

if __name__ == "__main__":
    print(fetch_demo_model(quiet="-q" in sys.argv))
