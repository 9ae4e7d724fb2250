"""Read a checkpoint tensor by tensor: safetensors shards or a GGUF file.

The streamed engine never holds more than the tensors it asked for. A safetensors tensor is read with
one positional read straight into the memory of the tensor it becomes: no mapping of the file (pages of
a mapping count in the resident set while it is open, so copying a tensor out of one costs twice its
size) and no second copy. The exception is a tensor used as stored for the whole run (the streamed
engine's embeddings and head): it can be the mapping itself, resident only where it is touched. A GGUF
tensor is dequantized only when it is read.
Every checkpoint counts the bytes it has read, so benchmarks can compare them with the weight bytes.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import struct
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from indexer.errors import ModelNotFoundError, UnsupportedArchitectureError

#: bytes per element of each safetensors dtype name
SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_SAFETENSORS_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}


class Checkpoint(Protocol):
    """Named tensors read on demand."""

    @property
    def names(self) -> frozenset[str]:
        """Every tensor name the checkpoint holds (Hugging Face names)."""
        ...

    @property
    def weight_bytes(self) -> int:
        """Bytes of all tensors as they are read (dequantized for GGUF)."""
        ...

    @property
    def bytes_read(self) -> int:
        """Bytes read from the file so far."""
        ...

    def nbytes(self, name: str) -> int:
        """Bytes of one tensor as read, without reading it."""
        ...

    def read(self, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """The named tensors, each a fresh CPU tensor the caller owns."""
        ...

    def read_into(self, name: str, out: torch.Tensor) -> None:
        """Read one tensor into `out` (same shape; converted to its dtype and device)."""
        ...

    def mapped(self, name: str, dtype: torch.dtype) -> torch.Tensor | None:
        """One tensor backed by a private mapping of the file when it is stored as `dtype` (a non-floating
        tensor: as whatever it is stored), else None: nothing is read until its pages are touched."""
        ...

    def drop_mapped_pages(self) -> None:
        """Let the pages of the mapped tensors leave the resident set (touched again, they are read back
        from the file): for a phase that does not use them."""
        ...


@dataclass(frozen=True)
class _Entry:
    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int  # absolute offset of the data in the file
    nbytes: int


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of one safetensors file (tensor name -> dtype, shape, data offsets)."""
    header, _ = _header_and_data_start(path)
    return header


def _header_and_data_start(path: Path) -> tuple[dict[str, Any], int]:
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header: dict[str, Any] = json.loads(handle.read(length))
    header.pop("__metadata__", None)
    return header, 8 + length


class _Counted:
    """What both checkpoints report: their names, their size as read, the bytes read so far."""

    _names: frozenset[str]
    _weight_bytes: int
    _bytes_read: int

    @property
    def names(self) -> frozenset[str]:
        """Every tensor name the checkpoint holds (Hugging Face names)."""
        return self._names

    @property
    def weight_bytes(self) -> int:
        """Bytes of all tensors as they are read (dequantized to float32 for GGUF)."""
        return self._weight_bytes

    @property
    def bytes_read(self) -> int:
        """Bytes read from the file so far (quantized bytes for GGUF)."""
        return self._bytes_read


class SafetensorsCheckpoint(_Counted):
    """The `*.safetensors` files of a model folder (sharded or not)."""

    def __init__(self, folder: Path):
        self.folder = folder
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise ModelNotFoundError(f"{folder.name}: no .safetensors weights in the model folder")
        self._entries: dict[str, _Entry] = {}
        for file in files:
            header, data_start = _header_and_data_start(file)
            for name, info in header.items():
                start, end = (int(v) for v in info["data_offsets"])
                dtype = SAFETENSORS_DTYPES.get(info["dtype"])
                if dtype is None:
                    raise ModelNotFoundError(
                        f"{file.name}: tensor {name} has unsupported dtype {info['dtype']}"
                    )
                self._entries[name] = _Entry(
                    file, dtype, tuple(info["shape"]), data_start + start, end - start
                )
        self._names = frozenset(self._entries)
        self._weight_bytes = sum(e.nbytes for e in self._entries.values())
        self._bytes_read = 0
        self._mappings: list[mmap.mmap] = []

    def nbytes(self, name: str) -> int:
        """Bytes of one tensor."""
        return self._entries[name].nbytes

    def read_into(self, name: str, out: torch.Tensor) -> None:
        """Read one tensor straight into `out` when dtype and device match, else through a copy."""
        entry = self._entries[name]
        if out.dtype != entry.dtype or out.device.type != "cpu" or not out.is_contiguous():
            out.copy_(self.read([name])[name])
            return
        with entry.file.open("rb", buffering=0) as handle:
            self._pread(handle.fileno(), entry, out, name)
        self._bytes_read += entry.nbytes

    def _pread(self, descriptor: int, entry: _Entry, out: torch.Tensor, name: str) -> None:
        target = out.reshape(-1).view(torch.uint8).numpy().data  # the tensor's own bytes
        done = 0
        while done < entry.nbytes:
            got = os.preadv(descriptor, [target[done:]], entry.start + done)
            if got <= 0:
                raise ModelNotFoundError(f"{entry.file.name}: truncated at tensor {name}")
            done += got

    def mapped(self, name: str, dtype: torch.dtype) -> torch.Tensor | None:
        """One tensor backed by a private (copy-on-write) mapping of its bytes in the file, when stored as
        `dtype` (or not floating) at an aligned offset; None otherwise. Only the pages touched become
        resident: the rows an embedding looks up, the whole matrix once a head multiplies by it."""
        entry = self._entries[name]
        if (entry.dtype.is_floating_point and entry.dtype != dtype) or entry.start % entry.dtype.itemsize:
            return None
        if entry.nbytes == 0:
            return torch.empty(entry.shape, dtype=entry.dtype)
        first = entry.start - entry.start % mmap.ALLOCATIONGRANULARITY  # a mapping starts on a boundary
        with entry.file.open("rb") as handle:
            mapping = mmap.mmap(
                handle.fileno(), entry.start + entry.nbytes - first, access=mmap.ACCESS_COPY, offset=first
            )
        self._mappings.append(mapping)
        count = entry.nbytes // entry.dtype.itemsize
        # the tensor keeps the mapping alive; writes (none are made) would stay private to the process
        flat = torch.frombuffer(mapping, dtype=entry.dtype, count=count, offset=entry.start - first)
        self._bytes_read += entry.nbytes  # counted as read: a head reads every page of it
        return flat.view(entry.shape)

    def drop_mapped_pages(self) -> None:
        """Drop the mapped tensors' pages from the resident set; they are never written, so what is read
        back from the file when they are touched again is what they held."""
        if not hasattr(mmap, "MADV_DONTNEED"):  # no madvise (Windows): the pages stay
            return
        for mapping in self._mappings:
            mapping.madvise(mmap.MADV_DONTNEED)

    def read(self, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """Read each named tensor into a tensor of its own (one positional read each, shard by shard)."""
        by_file: dict[Path, list[str]] = {}
        for name in names:
            by_file.setdefault(self._entries[name].file, []).append(name)
        tensors: dict[str, torch.Tensor] = {}
        for file, wanted in by_file.items():
            with file.open("rb", buffering=0) as handle:
                for name in sorted(wanted, key=lambda n: self._entries[n].start):  # forward through the file
                    entry = self._entries[name]
                    tensor = torch.empty(entry.shape, dtype=entry.dtype)
                    self._pread(handle.fileno(), entry, tensor, name)
                    tensors[name] = tensor
                    self._bytes_read += entry.nbytes
        return tensors


class GGUFCheckpoint(_Counted):
    """A GGUF file, each tensor dequantized (and un-permuted) when read, under Hugging Face names.

    The name map and the per-family fix-ups (the Q/K row permutation of Llama-like files) are
    transformers' own, so a tensor read here equals the one `from_pretrained(gguf_file=...)` builds.
    """

    def __init__(self, path: Path, skeleton: torch.nn.Module):
        import gguf
        from transformers.modeling_gguf_pytorch_utils import (
            TENSOR_PROCESSORS,
            TensorProcessor,
            get_gguf_hf_weights_map,
        )

        self.path = path
        self._reader = gguf.GGUFReader(path)
        architecture = str(bytes(self._reader.fields["general.architecture"].parts[-1]), encoding="utf-8")
        config = getattr(skeleton, "config").to_dict()  # noqa: B009 (nn.Module types attributes as tensors)
        processor_class = TENSOR_PROCESSORS.get(architecture, TensorProcessor)
        self._processor = processor_class(config=config)  # type: ignore[no-untyped-call]
        gguf_to_hf = get_gguf_hf_weights_map(skeleton, self._processor)
        self._tensors = {}
        for tensor in self._reader.tensors:
            hf_name = gguf_to_hf.get(tensor.name)
            if hf_name is not None:
                self._tensors[hf_name] = tensor
        self._names = frozenset(self._tensors)
        self._weight_bytes = sum(int(t.n_elements) * 4 for t in self._tensors.values())  # float32
        self._bytes_read = 0
        self._gguf_to_hf = gguf_to_hf

    def nbytes(self, name: str) -> int:
        """Bytes of one tensor once dequantized to float32."""
        return int(self._tensors[name].n_elements) * 4

    def read_into(self, name: str, out: torch.Tensor) -> None:
        """Dequantize one tensor into `out`."""
        out.copy_(self.read([name])[name])

    def mapped(self, name: str, dtype: torch.dtype) -> torch.Tensor | None:
        """None: a GGUF tensor is dequantized, so there are no stored bytes to map."""
        return None

    def drop_mapped_pages(self) -> None:
        """Nothing to drop: no tensor is mapped."""

    def read(self, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """Dequantize the named tensors."""
        import numpy as np
        from gguf.quants import dequantize

        tensors: dict[str, torch.Tensor] = {}
        for name in names:
            tensor = self._tensors[name]
            weights = dequantize(tensor.data, tensor.tensor_type)
            result = self._processor.process(  # type: ignore[no-untyped-call]
                weights=weights, name=tensor.name, tensor_key_mapping=self._gguf_to_hf, parsed_parameters={}
            )
            if self._gguf_to_hf.get(result.name) != name:
                raise UnsupportedArchitectureError(
                    f"{self.path.name}: GGUF tensor {tensor.name} does not map to one tensor ({name})"
                )
            tensors[name] = torch.from_numpy(np.array(result.weights, dtype=np.float32, copy=True))
            self._bytes_read += int(tensor.n_bytes)
        return tensors


def write_safetensors(
    path: Path, checkpoint: Checkpoint, names: Iterable[str], dtype: torch.dtype | None = None
) -> None:
    """Write `names` from `checkpoint` into one safetensors file, one tensor in memory at a time."""
    layout: dict[str, Any] = {}
    offset = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=path.parent) as data:
        for name in sorted(names):
            tensor = checkpoint.read([name])[name]
            if dtype is not None:
                tensor = tensor.to(dtype)
            raw = tensor.contiguous().view(torch.uint8).numpy().tobytes()
            data.write(raw)
            layout[name] = {
                "dtype": _SAFETENSORS_NAMES[tensor.dtype],
                "shape": list(tensor.shape),
                "data_offsets": [offset, offset + len(raw)],
            }
            offset += len(raw)
            del tensor, raw
        header = json.dumps(layout, separators=(",", ":")).encode()
        header += b" " * (-len(header) % 8)  # the format aligns the data to 8 bytes
        data.seek(0)
        with path.open("wb") as out:
            out.write(struct.pack("<Q", len(header)))
            out.write(header)
            shutil.copyfileobj(data, out, length=16 * 2**20)
            out.flush()
            os.fsync(out.fileno())
