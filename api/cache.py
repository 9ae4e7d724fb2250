"""A bounded in-process cache of rendered read responses, validated against the model's `updated_at`.

Every write that changes what a model's pages show bumps `models.updated_at` (a repository invariant), so a
cached body is reused only while one cheap indexed query confirms that stamp: correct across API processes
and workers, and it skips the half-dozen ORM queries and the serialisation of a full lookup.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.errors import NotFoundError
from catalog.models import CatalogModel


class ResponseCache:
    """LRU of (key, model stamp) -> rendered body bytes."""

    def __init__(self, max_entries: int = 4096):
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[datetime, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, stamp: datetime) -> bytes | None:
        """The cached body if it was rendered at this stamp."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != stamp:
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: Hashable, stamp: datetime, body: bytes) -> None:
        """Remember a body rendered at `stamp`."""
        if self.max_entries == 0:
            return
        with self._lock:
            self._entries[key] = (stamp, body)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def model_stamp(session: Session, hub_id: str) -> datetime:
    """The model's `updated_at` (one indexed query), else `NotFoundError`."""
    stamp = session.execute(select(CatalogModel.updated_at).where(CatalogModel.hub_id == hub_id)).scalar()
    if stamp is None:
        raise NotFoundError(f"model {hub_id!r} is not in the catalog")
    return stamp
