"""Validation of the names that come from users: model ids, revisions, configurations."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from catalog.errors import InvalidInputError

_NAME_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
NAME_PART_PATTERN = rf"^{_NAME_PART}$"
MODEL_ID_PATTERN = rf"^{_NAME_PART}/{_NAME_PART}$"
SHA_PATTERN = r"^[0-9a-f]{40}$"
DIGEST_PATTERN = r"^(?:[0-9a-f]{40}|sha256:[0-9a-f]{64})$"
_REF = r"[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,253}[A-Za-z0-9_])?"
REF_PATTERN = rf"^{_REF}$"
REVISION_QUERY_PATTERN = rf"^(?:sha256:[0-9a-f]{{64}}|{_REF})$"
_MODEL_ID_RE = re.compile(MODEL_ID_PATTERN)
_SHA_RE = re.compile(SHA_PATTERN)
_DIGEST_RE = re.compile(DIGEST_PATTERN)
_REF_RE = re.compile(REF_PATTERN)


def validate_model_id(model_id: str) -> str:
    """Return `org/name` if it is a well-formed hub id (never a path), else raise `InvalidInputError`."""
    if not _MODEL_ID_RE.fullmatch(model_id) or ".." in model_id or "--" in model_id:
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


def canonical_json(value: Any) -> str:
    """Deterministic JSON text (sorted keys, no spaces) for hashing."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of a run configuration."""
    return hashlib.sha256(canonical_json(dict(config)).encode()).hexdigest()
