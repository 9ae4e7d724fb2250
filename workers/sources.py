"""Local model sources (a folder or a .gguf file): their catalog id and their content digest."""

from __future__ import annotations

import hashlib
from pathlib import Path

from contracts.identifiers import local_revision, validate_model_id

_CHUNK = 1 << 20


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
        return local_revision(_file_sha256(source))
    digest = hashlib.sha256()
    for file in sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith(".")):
        digest.update(f"{file.name}\0{_file_sha256(file)}\n".encode())
    return local_revision(digest.hexdigest())


def local_path_of(spec: str) -> Path | None:
    """The local folder or .gguf file `spec` names, None for a hub id (without importing the indexer).

    Raises `InvalidInputError` for a path that does not exist or is neither a folder nor a .gguf file,
    and for a string that is neither a path nor a well-formed hub id `org/name`.
    """
    from contracts.errors import InvalidInputError

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
