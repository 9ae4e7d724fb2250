"""Bearer API keys with scopes: reads are public, writes need a key with the right scope."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.problems import AuthenticationError
from api.services import Services, ServicesDep
from catalog.errors import PermissionDeniedError
from catalog.repositories import ApiKeyRepository
from catalog.repositories.keys import has_scope

bearer = HTTPBearer(auto_error=False, description="An API key created with `swi keys create`.")


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    key_id: int
    owner: str
    scopes: tuple[str, ...]


def _authenticate(services: Services, secret: str, scope: str) -> Principal:
    with services.session(write=True) as session:
        key = ApiKeyRepository(session).authenticate(secret)
        if key is None:
            raise AuthenticationError("the API key is unknown or revoked")
        if not has_scope(key, scope):
            raise PermissionDeniedError(f"this API key lacks the '{scope}' scope")
        principal = Principal(key_id=key.id, owner=key.owner, scopes=tuple(key.scopes))
        session.commit()
        return principal


def require_scope(scope: str) -> Callable[..., object]:
    """A dependency that authenticates the bearer key and checks `scope` (401 / 403 otherwise)."""

    async def dependency(
        services: ServicesDep, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
            raise AuthenticationError("this endpoint needs an API key: send 'Authorization: Bearer <key>'")
        return await run_in_threadpool(_authenticate, services, credentials.credentials, scope)

    return dependency
