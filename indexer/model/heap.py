"""The C heap of a memory-bounded run: freed tensors go back to the system, not into heap holes.

glibc's malloc serves a request of at least its mmap threshold (128 KiB at start) with a mapping of its own,
unmapped when freed. But the threshold is dynamic: freeing such a mapping raises it to that size (up to
32 MiB), and from then on tensors below it are carved from the heap, where a freed one stays resident as a
hole wherever a live object sits above it. A streamed run frees working tensors of every size all the time
(a down projection read for planning, a layer's activations, a chunk of logits): on SmolLM2's layer-major
suite the holes grew to 115 MiB, a fifth of the weights, and varied from child to child
(`benchmarks/RESULTS-streamed.md`). Pinning the threshold keeps every tensor of 128 KiB or more in a mapping
of its own; trimming returns what a parse (the tokenizer's) leaves behind in the heap. A phase with room
to spare can lift the pin for its length (`reused_heap`), and is trimmed after it.

Both are process-wide settings of glibc's allocator (pinning cannot be undone: glibc has no call that
turns the dynamic threshold back on); elsewhere (macOS, musl) they do nothing.
"""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

#: glibc's `mallopt` parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc's initial mmap threshold, kept for good: tensors this large or larger get mappings of their own
MMAP_THRESHOLD = 128 * 1024
#: glibc's largest mmap threshold on 64-bit (half its heap size): the most a heap can serve
LARGEST_THRESHOLD = 32 * 1024 * 1024
#: the trim threshold while the heap is reused: freed memory stays for the next working tensor
_KEPT = 1 << 30


@cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    except (OSError, AttributeError):
        return None
    return libc


@cache
def return_freed_tensors() -> bool:
    """Pin glibc's mmap threshold (and the heap's trim threshold) at 128 KiB; whether it could (once)."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, MMAP_THRESHOLD)
    )


@contextmanager
def reused_heap(threshold: int = LARGEST_THRESHOLD) -> Iterator[None]:
    """While the block runs, tensors below `threshold` come from the heap and their freed memory is reused
    (no fresh pages to fault in for each); after it, the pin again and the heap trimmed.

    For a phase whose working tensors are all freed by its end and with room under the run's peak (a
    streamed suite's layer calls, whose embeddings and head are mapped, not read; its heads, after the
    layers' buffers are freed): what the heap holds meanwhile is about one working set, and fresh pages
    faulted in for every working tensor made the streamed suite ~1.5x slower than the in-memory one.
    """
    libc = _glibc()
    if libc is None or not return_freed_tensors():
        yield
        return
    libc.mallopt(_M_TRIM_THRESHOLD, _KEPT)
    libc.mallopt(_M_MMAP_THRESHOLD, threshold)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, MMAP_THRESHOLD)
        libc.malloc_trim(0)


def trim() -> None:
    """Give the heap's free pages back to the system (a no-op without glibc)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


__all__ = ["LARGEST_THRESHOLD", "MMAP_THRESHOLD", "return_freed_tensors", "reused_heap", "trim"]
