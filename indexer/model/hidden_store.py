"""Hidden-state tensors by handle, in memory up to a budget and in a temporary file beyond it."""

from __future__ import annotations

import math
import mmap
import os
import tempfile
import warnings
from typing import IO

import torch


class HiddenStore:
    """Hidden-state tensors by handle: in memory up to `budget` bytes, beyond it in a temporary file.

    A state kept in host memory is copied into a slot of its own, an anonymous mapping outside the C heap
    that is recycled for the next state of its size: a state costs no fresh mapping (whose pages fault in
    on first touch) once the first layer has made the slots, and the states, which outlive every working
    tensor of a layer call, never sit in the heap among them, whatever glibc's threshold
    (`indexer.model.heap`).
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._memory: dict[int, torch.Tensor] = {}
        self._slots: dict[int, list[torch.Tensor]] = {}  # bytes -> free slots (flat uint8) of that size
        self._slot_of: dict[int, torch.Tensor] = {}  # handle -> its slot
        #: handle -> (offset in the file, shape, dtype, device)
        self._disk: dict[int, tuple[int, torch.Size, torch.dtype, torch.device]] = {}
        self._free: dict[int, list[int]] = {}  # bytes -> free offsets of that size (states share a size)
        self._file: IO[bytes] | None = None
        self._end = 0
        self._next = 0
        self.resident_bytes = 0
        self.peak_bytes = 0  # in memory, at the peak
        self.written_bytes = 0  # to the file, in all

    def put(self, tensor: torch.Tensor) -> int:
        """Keep `tensor` (the store owns it now); its handle."""
        handle, self._next = self._next, self._next + 1
        size = tensor.numel() * tensor.element_size()
        if self.resident_bytes + size <= self.budget:
            if tensor.device.type == "cpu" and size > 0:
                slots = self._slots.get(size)
                slot = slots.pop() if slots else _mapped_bytes(size)
                kept = slot.view(tensor.dtype).view(tensor.shape)
                kept.copy_(tensor)
                self._slot_of[handle] = slot
                tensor = kept
            self._memory[handle] = tensor
            self.resident_bytes += size
            self.peak_bytes = max(self.peak_bytes, self.resident_bytes)
            return handle
        if self._file is None:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by `close`)
        offsets = self._free.get(size)
        offset = offsets.pop() if offsets else self._end
        if offset == self._end:
            self._end += size
        data = tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy()
        os.pwrite(self._file.fileno(), data.data, offset)
        self.written_bytes += size
        self._disk[handle] = (offset, tensor.shape, tensor.dtype, tensor.device)
        return handle

    def get(self, handle: int) -> torch.Tensor:
        """The tensor behind `handle` (read back from the file when it was written there)."""
        if handle in self._memory:
            return self._memory[handle]
        assert self._file is not None
        offset, shape, dtype, device = self._disk[handle]
        tensor = torch.empty(shape, dtype=dtype)
        target = tensor.reshape(-1).view(torch.uint8).numpy().data
        done = 0
        while done < len(target):
            got = os.preadv(self._file.fileno(), [target[done:]], offset + done)
            if got <= 0:
                raise OSError("the hidden-state file is truncated")
            done += got
        return tensor.to(device)

    def nbytes(self, handle: int) -> int:
        """Bytes of the tensor behind `handle`."""
        if handle in self._memory:
            tensor = self._memory[handle]
            return tensor.numel() * tensor.element_size()
        _, shape, dtype, _ = self._disk[handle]
        return math.prod(shape) * torch.empty((), dtype=dtype).element_size()

    def drop(self, handle: int) -> None:
        """Forget the tensor behind `handle`."""
        tensor = self._memory.pop(handle, None)
        if tensor is not None:
            self.resident_bytes -= tensor.numel() * tensor.element_size()
            slot = self._slot_of.pop(handle, None)
            if slot is not None:
                self._slots.setdefault(slot.numel(), []).append(slot)
            return
        size = self.nbytes(handle)
        offset = self._disk.pop(handle)[0]
        self._free.setdefault(size, []).append(offset)

    def close(self) -> None:
        """Drop everything and remove the file."""
        self._memory.clear()
        self._slot_of.clear()
        self._slots.clear()
        self._disk.clear()
        self.resident_bytes = 0
        if self._file is not None:
            self._file.close()
            self._file = None


def _mapped_bytes(size: int) -> torch.Tensor:
    """`size` bytes of an anonymous mapping of their own, as a flat uint8 tensor (unmapped with it)."""
    mapping = mmap.mmap(-1, size)
    with warnings.catch_warnings():  # the mapping is writable; torch warns of buffers in general
        warnings.simplefilter("ignore", UserWarning)
        return torch.frombuffer(mapping, dtype=torch.uint8)
