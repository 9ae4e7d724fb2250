"""The identifier grammars, defined once: hub model ids, revisions and refs, the local-source id; hashing.

- a model id is the hub's `org/name` (local sources get `local/<file or folder name>`);
- a stored revision is a 40-hex commit sha, or `sha256:<64 hex>` (the content digest of a local source);
- a ref is what a user may ask for: a branch, a tag or a sha.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from contracts.errors import InvalidInputError

_NAME_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
NAME_PART_PATTERN = rf"^{_NAME_PART}$"
MODEL_ID_PATTERN = rf"^{_NAME_PART}/{_NAME_PART}$"
SHA_PATTERN = r"^[0-9a-f]{40}$"
LOCAL_DIGEST_PREFIX = "sha256:"
DIGEST_PATTERN = r"^(?:[0-9a-f]{40}|sha256:[0-9a-f]{64})$"
_REF = r"[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,253}[A-Za-z0-9_])?"
REF_PATTERN = rf"^{_REF}$"
REVISION_QUERY_PATTERN = rf"^(?:sha256:[0-9a-f]{{64}}|{_REF})$"
#: the org of every local source's catalog id
LOCAL_ORG = "local"
#: the longest model id (two parts of at most 96 characters and the slash)
MODEL_ID_MAX = 193
_MODEL_ID_RE = re.compile(MODEL_ID_PATTERN)
_SHA_RE = re.compile(SHA_PATTERN)
_DIGEST_RE = re.compile(DIGEST_PATTERN)
_REF_RE = re.compile(REF_PATTERN)
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_INVALID_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def is_model_id(text: str) -> bool:
    """Whether `text` is a well-formed hub id `org/name` (never a path)."""
    return bool(_MODEL_ID_RE.fullmatch(text)) and ".." not in text and "--" not in text


def validate_model_id(model_id: str) -> str:
    """Return `org/name` if it is a well-formed hub id (never a path), else raise `InvalidInputError`."""
    if not is_model_id(model_id):
        raise InvalidInputError(
            f"invalid model id {model_id[:120]!r}: expected 'org/name' (letters, digits, '.', '_', '-', "
            "each part at most 96 characters, no '..' or '--')"
        )
    return model_id


def split_model_id(model_id: str) -> tuple[str, str]:
    """`(org, name)` of a validated model id."""
    org, name = validate_model_id(model_id).split("/")
    return org, name


def is_commit_sha(revision: str) -> bool:
    """Whether `revision` is a full 40-hex commit sha (lower case)."""
    return bool(_SHA_RE.fullmatch(revision))


def validate_revision_digest(revision: str) -> str:
    """A stored revision: a 40-hex commit sha or `sha256:<64 hex>` (the digest of a local file)."""
    if not _DIGEST_RE.fullmatch(revision):
        raise InvalidInputError(
            f"invalid revision {revision[:80]!r}: expected a 40-hex commit sha or 'sha256:<64 hex>'"
        )
    return revision


def validate_ref(ref: str) -> str:
    """A branch, tag or sha as a user may request it (no '..', no leading '/' or '-')."""
    if not _REF_RE.fullmatch(ref) or ".." in ref or "//" in ref:
        raise InvalidInputError(f"invalid revision {ref[:80]!r}: expected a branch, tag or commit sha")
    return ref


def local_model_id(path: str | PurePath) -> str:
    """`local/<file or folder name>`, made a valid catalog id (the path itself is never stored)."""
    name = _INVALID_NAME.sub("-", PurePath(path).name)
    while "--" in name or ".." in name:
        name = name.replace("--", "-").replace("..", ".")
    name = name.lstrip("._-")[:96].rstrip(".-") or "model"
    return validate_model_id(f"{LOCAL_ORG}/{name}")


def local_revision(hex_digest: str) -> str:
    """The stored revision of a local source: `sha256:<hex digest of its content>`."""
    if not _HEX64_RE.fullmatch(hex_digest):
        raise InvalidInputError(f"not a sha256 hex digest: {hex_digest[:80]!r}")
    return f"{LOCAL_DIGEST_PREFIX}{hex_digest}"


def is_local_revision(revision: str) -> bool:
    """Whether `revision` is a local source's content digest `sha256:<64 hex>`."""
    return revision.startswith(LOCAL_DIGEST_PREFIX) and bool(_HEX64_RE.fullmatch(revision[7:]))


def short_revision(revision: str) -> str:
    """The first 12 hex digits of a commit sha or a local content digest (for names and labels)."""
    return revision.removeprefix(LOCAL_DIGEST_PREFIX)[:12]


#: the key of a run's configuration naming the versions of the code that produced it (part of the run key)
VERSIONS_KEY = "versions"


def canonical_json(value: Any) -> str:
    """Deterministic JSON text (sorted keys, no spaces, UTF-8, no NaN): what hashes are taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_sha256(value: Any) -> str:
    """SHA-256 hex of the canonical JSON of `value`."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of a run configuration."""
    return canonical_sha256(dict(config))
