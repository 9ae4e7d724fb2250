"""One pipeline context (settings, engine, sessions) per process, created after a worker forks."""

from __future__ import annotations

import os
import threading

from catalog.db import make_engine, make_session_factory
from workers.pipeline import PipelineContext
from workers.settings import WorkerSettings, get_settings

_lock = threading.Lock()
_contexts: dict[tuple[int, str], PipelineContext] = {}
# never fork while another thread holds the lock (the child would inherit it held, forever)
os.register_at_fork(before=_lock.acquire, after_in_parent=_lock.release, after_in_child=_lock.release)


def pipeline_context(settings: WorkerSettings | None = None) -> PipelineContext:
    """This process's context; a forked child never reuses its parent's database connections."""
    settings = settings or get_settings()
    key = (os.getpid(), settings.model_dump_json())
    with _lock:
        context = _contexts.get(key)
        if context is None:
            engine = make_engine(settings.resolved_database_url(), pool_size=4, max_overflow=4)
            context = PipelineContext(settings=settings, sessions=make_session_factory(engine))
            _contexts[key] = context
        return context


def forget_inherited_connections() -> None:
    """In a freshly forked child: drop the parent's pools without closing the parent's sockets."""
    pid = os.getpid()
    with _lock:
        for key, context in list(_contexts.items()):
            if key[0] != pid:
                bind = context.sessions.kw.get("bind")
                if bind is not None:
                    bind.dispose(close=False)
                del _contexts[key]
