"""An in-process micro-cache of rendered read responses, kept consistent with `models.updated_at`.

Every write that changes what a model's pages show bumps `models.updated_at` in the same transaction (a
repository invariant). A cached response records the `updated_at` of each model it shows, read *before*
the body was rendered, so its stamps are never newer than its content.

Consistency contract (what a client can observe):

- Writes committed in this process (the embedded job runner, submissions, anything using a SQLAlchemy
  `Session`) are visible to the very next request: a commit that wrote anything bumps a process-wide write
  generation, and an entry validated before that generation is revalidated against the database first.
- Writes committed by other processes (Celery workers, other API processes) are visible at most
  `ttl_s` seconds later (default `DEFAULT_TTL_S`, one second). An entry is served without touching the
  database only while its last validation is younger than `ttl_s`; validation is one batched query for
  every cached model (`hub_id IN (...)`), run in the background every `REFRESH_AT * ttl_s` while traffic
  flows, or awaited by the request that finds the cache older than `ttl_s`.
- A changed, deleted or unknown model's entries are dropped, never served. ETags are computed from the
  exact cached bytes, so a strong ETag always names the body sent with it.

Cached: `GET /v1/models/{org}/{name}`, `.../super-weights` and `/v1/compare`. The listing, run reports
(a job can link to a run without touching its model), jobs and bundles are read from the database on every
request. So a cache hit costs a dictionary look-up, no thread hop, no ORM session and no serialisation.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, event, select
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction
from starlette.concurrency import run_in_threadpool

from api.etag import etag_for
from catalog.errors import NotFoundError
from catalog.models import CatalogModel

logger = logging.getLogger("swi.api.cache")

DEFAULT_TTL_S = 1.0
#: Fraction of the TTL after which a hit starts a background revalidation (the rest is its margin).
REFRESH_AT = 0.75
#: Most hub ids bound in one validation query (SQLite's old limit on bound parameters is 999).
VALIDATION_CHUNK = 500

# -- the process-wide write generation -----------------------------------------------------------------

_WROTE = "swi_cache_wrote"
_generation = itertools.count(1)
_current_generation = 0
_generation_lock = threading.Lock()


def write_generation() -> int:
    """How many committed writes this process has seen (any SQLAlchemy `Session`)."""
    return _current_generation


def note_write() -> None:
    """Count one committed write: every cache revalidates before its next hit."""
    global _current_generation
    with _generation_lock:
        _current_generation = next(_generation)


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _flush_context: UOWTransaction) -> None:
    session.info[_WROTE] = True


@event.listens_for(Session, "do_orm_execute")
def _executed(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info[_WROTE] = True


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    # A flag left by a rolled-back transaction only costs one spurious revalidation.
    if session.info.pop(_WROTE, False):
        note_write()


# -- the cache -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachedBody:
    """A rendered body, its strong ETag, and the `updated_at` of each model it shows."""

    body: bytes
    etag: str
    stamps: tuple[tuple[str, datetime], ...]


@dataclass(slots=True)
class _Entry:
    cached: CachedBody
    validated_at: float
    generation: int


class ResponseCache:
    """LRU of key -> `CachedBody`, revalidated against `models.updated_at` at least every `ttl_s`."""

    def __init__(
        self,
        max_entries: int = 4096,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._validation: asyncio.Task[None] | None = None
        self._last_validation = float("-inf")

    def __len__(self) -> int:
        return len(self._entries)

    def fresh(self, key: Hashable) -> CachedBody | None:
        """The cached body if it was validated within `ttl_s` and after this process's last write."""
        entry = self._entries.get(key)
        if entry is None or entry.generation != _current_generation:
            return None
        if self.clock() - entry.validated_at > self.ttl_s:
            return None
        with contextlib.suppress(KeyError):  # atomic under the GIL; a concurrent eviction is harmless
            self._entries.move_to_end(key)
        return entry.cached

    def holds(self, key: Hashable) -> bool:
        """Whether an entry (fresh or not) exists for `key`."""
        return key in self._entries

    def put(self, key: Hashable, cached: CachedBody, *, validated_at: float, generation: int) -> None:
        """Remember a body whose stamps were read at `validated_at`, in write `generation`."""
        if self.max_entries == 0:
            return
        with self._lock:
            self._entries[key] = _Entry(cached, validated_at, generation)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def needs_refresh(self) -> bool:
        """Whether the last validation is older than `REFRESH_AT` of the TTL (time to revalidate)."""
        return self.clock() - self._last_validation > self.ttl_s * REFRESH_AT

    def validate(self, engine: Engine) -> None:
        """Check every entry's stamps in one batched query; keep the unchanged, drop the rest."""
        generation = _current_generation
        started = self.clock()
        with self._lock:
            # One C-level copy: hits reorder the dict on the event loop thread without taking the lock.
            snapshot = list(self._entries.items())
        current = _stamps(engine, {hub_id for _, entry in snapshot for hub_id, _ in entry.cached.stamps})
        with self._lock:
            for key, _ in snapshot:
                entry = self._entries.get(key)
                if entry is None:
                    continue
                if all(current.get(hub_id) == stamp for hub_id, stamp in entry.cached.stamps):
                    entry.validated_at = max(entry.validated_at, started)
                    entry.generation = max(entry.generation, generation)
                else:
                    del self._entries[key]
            self._last_validation = max(self._last_validation, started)

    async def revalidate(self, engine: Engine) -> None:
        """`validate` in the thread pool, shared by every request that waits on it (single flight)."""
        task = self._validation
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.ensure_future(run_in_threadpool(self.validate, engine))
            self._validation = task
        await asyncio.shield(task)

    def refresh_in_background(self, engine: Engine) -> None:
        """Start a revalidation unless one runs; failures are logged (entries then age out)."""
        task = self._validation
        if task is not None and not task.done():
            return
        task = asyncio.ensure_future(run_in_threadpool(self.validate, engine))
        task.add_done_callback(_log_failure)
        self._validation = task


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("response cache revalidation failed", exc_info=task.exception())


def _stamps(engine: Engine, hub_ids: Iterable[str]) -> dict[str, datetime]:
    ids = sorted(hub_ids)
    found: dict[str, datetime] = {}
    with engine.connect() as connection:
        for start in range(0, len(ids), VALIDATION_CHUNK):
            rows = connection.execute(
                select(CatalogModel.hub_id, CatalogModel.updated_at).where(
                    CatalogModel.hub_id.in_(ids[start : start + VALIDATION_CHUNK])
                )
            )
            found.update((hub_id, stamp) for hub_id, stamp in rows)
    return found


def model_stamp(session: Session, hub_id: str) -> datetime:
    """The model's `updated_at` (one indexed query), else `NotFoundError`."""
    stamp = session.execute(select(CatalogModel.updated_at).where(CatalogModel.hub_id == hub_id)).scalar()
    if stamp is None:
        raise NotFoundError(f"model {hub_id!r} is not in the catalog")
    return stamp


async def cached_body(
    cache: ResponseCache,
    engine: Engine,
    key: Hashable,
    render: Callable[[], tuple[bytes, Sequence[tuple[str, datetime]]]],
) -> CachedBody:
    """The body for `key`: from the cache when fresh, else `render()` (in the thread pool) and cache it.

    `render` returns the body and the `(hub_id, updated_at)` of each model it shows, read before rendering.
    """
    cached = cache.fresh(key)
    if cached is None and cache.holds(key):
        try:
            await cache.revalidate(engine)
        except Exception:
            logger.warning("response cache revalidation failed", exc_info=True)
        cached = cache.fresh(key)
    if cached is not None:
        if cache.needs_refresh():
            cache.refresh_in_background(engine)
        return cached
    return await run_in_threadpool(_render_and_put, cache, key, render)


def _render_and_put(
    cache: ResponseCache,
    key: Hashable,
    render: Callable[[], tuple[bytes, Sequence[tuple[str, datetime]]]],
) -> CachedBody:
    # Taken before the stamps are read: a write that lands while rendering leaves the entry older.
    generation, started = _current_generation, cache.clock()
    body, stamps = render()
    cached = CachedBody(body=body, etag=etag_for(body), stamps=tuple(stamps))
    cache.put(key, cached, validated_at=started, generation=generation)
    return cached
