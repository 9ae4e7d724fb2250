"""API keys: random secrets shown once, stored as SHA-256, with scopes."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.errors import InvalidInputError, NotFoundError
from catalog.models import ApiKey, utcnow

SCOPES = ("submit", "admin")
KEY_PREFIX = "swi_"
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(secret: str) -> str:
    """SHA-256 hex of a key (keys are 256-bit random, so a fast hash is enough: nothing to brute-force)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeyRepository:
    """Create, authenticate, list and revoke API keys."""

    def __init__(self, session: Session):
        self.session = session

    def create(self, owner: str, scopes: list[str]) -> tuple[ApiKey, str]:
        """A new key for `owner` with `scopes`; returns the row and the secret (shown once, never stored)."""
        owner = owner.strip()
        if not owner or len(owner) > 200:
            raise InvalidInputError("the key owner must be 1 to 200 characters")
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise InvalidInputError(f"scopes must be among {', '.join(SCOPES)} (got {', '.join(unknown)})")
        random_part = secrets.token_urlsafe(32)
        secret = f"{KEY_PREFIX}{random_part}"
        key = ApiKey(
            prefix=random_part[:8], key_hash=hash_key(secret), owner=owner, scopes=sorted(set(scopes))
        )
        self.session.add(key)
        self.session.flush()
        return key, secret

    def authenticate(self, secret: str) -> ApiKey | None:
        """The live key whose secret this is, or None; records when it was last used (coarsely)."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
            return None
        key = self.session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(secret))).one_or_none()
        if key is None or key.revoked_at is not None:
            return None
        now = utcnow()
        # Writing on every request would serialize readers on SQLite; minute resolution is plenty.
        if key.last_used_at is None or now - key.last_used_at > _LAST_USED_RESOLUTION:
            key.last_used_at = now
        return key

    def all(self) -> list[ApiKey]:
        """All keys, newest first."""
        return list(self.session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())))

    def revoke(self, key_id: int) -> ApiKey:
        """Revoke a key by id (idempotent)."""
        key = self.session.get(ApiKey, key_id)
        if key is None:
            raise NotFoundError(f"no API key with id {key_id}")
        if key.revoked_at is None:
            key.revoked_at = utcnow()
        return key


def has_scope(key: ApiKey, scope: str) -> bool:
    """Whether `key` grants `scope` (admin grants everything)."""
    return scope in key.scopes or "admin" in key.scopes
