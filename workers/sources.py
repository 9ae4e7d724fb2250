"""Local model sources (a folder or a .gguf file): their catalog id and their content digest."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from catalog.identifiers import validate_model_id

LOCAL_ORG = "local"
_CHUNK = 1 << 20
_INVALID = re.compile(r"[^A-Za-z0-9._-]+")


def local_model_id(path: str | Path) -> str:
    """`local/<file or folder name>`, made a valid catalog id (the path itself is never stored)."""
    name = _INVALID.sub("-", Path(path).name)
    while "--" in name or ".." in name:
        name = name.replace("--", "-").replace("..", ".")
    name = name.lstrip("._-")[:96].rstrip(".-") or "model"
    return validate_model_id(f"{LOCAL_ORG}/{name}")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_digest(path: str | Path) -> str:
    """`sha256:<hex>` of a file, or of a folder's files (names, contents): the revision of a local source."""
    source = Path(path)
    if source.is_file():
        return f"sha256:{_file_sha256(source)}"
    digest = hashlib.sha256()
    for file in sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith(".")):
        digest.update(f"{file.name}\0{_file_sha256(file)}\n".encode())
    return f"sha256:{digest.hexdigest()}"


def local_path_of(spec: str) -> Path | None:
    """The local folder or .gguf file `spec` names, None for a hub id (without importing the indexer).

    Raises `InvalidInputError` for a path that does not exist or is neither a folder nor a .gguf file,
    and for a string that is neither a path nor a well-formed hub id `org/name`.
    """
    from catalog.errors import InvalidInputError

    path = Path(spec).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix == ".gguf"):
        return path.resolve()
    if path.exists():
        raise InvalidInputError(
            f"{spec} is a file but not a .gguf file; pass a folder, a .gguf file or a hub id"
        )
    if spec.endswith(".gguf") or spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise InvalidInputError(f"no such folder or .gguf file, and not a hub id org/name: {spec}")
    validate_model_id(spec)
    return None
