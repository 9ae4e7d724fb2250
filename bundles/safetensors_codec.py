"""The safetensors codec of bundles: a manifest to safetensors bytes, and the bytes back to the manifest.

Standard library only (no `safetensors` or `torch`): per source tensor the file holds `.rows`/`.cols`
(int32), `.values` (the stored dtype) and `.values_f32`; `__metadata__` carries the identifying fields as
strings and the whole manifest (compact JSON), so the file converts back to the JSON manifest losslessly.

- `encode(manifest)`: the bundle's bytes (the `safetensors` format renders these).
- `decode(data)`: the manifest, checked against its hash and against tensors re-encoded from it (the bytes
  must be this codec's own).
- `decode_carried(data, source)`: the manifest, checked only against the coordinates and values its
  tensors hold (any writer's layout); the caller checks the manifest itself.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from bundles.common import hf_tensor_name
from contracts.errors import BundleFormatError
from contracts.manifest import check_manifest, down_proj_module, float32_of

#: safetensors dtype codes of the dtypes super weights are stored in
SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}
_ITEMSIZE = {"F64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2}
#: struct codes of the dtypes `decode_tensor` reads (BF16 is widened to float32 by hand)
_DECODE = {"F64": ("d", 8), "F32": ("f", 4), "I32": ("i", 4), "F16": ("e", 2)}


# ---- encoding ----


def _encode_values(values: Sequence[float], dtype: str, where: str) -> bytes:
    """Little-endian bytes of `values` in `dtype`; refuses any value the dtype cannot hold exactly."""
    out = bytearray()
    for value in values:
        if dtype == "float64":
            out += struct.pack("<d", value)
            continue
        if dtype == "bfloat16":
            bits = struct.pack("<f", value)
            if bits[:2] != b"\x00\x00":
                raise BundleFormatError(f"{where}: {value!r} is not a bfloat16 value; refusing to round it")
            out += bits[2:]
            continue
        code = "<f" if dtype == "float32" else "<e"
        try:
            packed = struct.pack(code, value)
        except OverflowError:
            raise BundleFormatError(f"{where}: {value!r} does not fit {dtype}") from None
        if struct.unpack(code, packed)[0] != value:
            raise BundleFormatError(f"{where}: {value!r} is not a {dtype} value; refusing to round it")
        out += packed
    return bytes(out)


def safetensors_tensors(manifest: Mapping[str, Any]) -> list[tuple[str, str, bytes, int]]:
    """`(name, safetensors dtype, little-endian bytes, count)` of every tensor of the safetensors bundle."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for weight in manifest["super_weights"]:
        groups.setdefault(hf_tensor_name(weight), []).append(weight)
    tensors: list[tuple[str, str, bytes, int]] = []
    for tensor, weights in sorted(groups.items()):
        count = len(weights)
        rows = struct.pack(f"<{count}i", *(int(w["row"]) for w in weights))
        cols = struct.pack(f"<{count}i", *(int(w["col"]) for w in weights))
        tensors += [(f"{tensor}.rows", "I32", rows, count), (f"{tensor}.cols", "I32", cols, count)]
        values = [w.get("value") for w in weights]
        if any(v is None for v in values):
            continue  # reported coordinates without stored values: coordinates only
        floats = [float(v) for v in values if v is not None]
        f32 = [float32_of(v) for v in floats]
        if any(v is None for v in f32):
            raise BundleFormatError(f"{tensor}: a value is outside the float32 range")
        tensors.append(
            (
                f"{tensor}.values_f32",
                "F32",
                struct.pack(f"<{count}f", *(v for v in f32 if v is not None)),
                count,
            )
        )
        dtypes = {w.get("dtype") for w in weights}
        dtype = dtypes.pop() if len(dtypes) == 1 else None
        if isinstance(dtype, str) and dtype in SAFETENSORS_DTYPES:
            tensors.append(
                (f"{tensor}.values", SAFETENSORS_DTYPES[dtype], _encode_values(floats, dtype, tensor), count)
            )
    return tensors


def encode(manifest: Mapping[str, Any]) -> bytes:
    """The safetensors bundle of a checked manifest (see the module docstring)."""
    tensors = safetensors_tensors(manifest)
    # 4- and 8-byte tensors first so every tensor starts at a multiple of its element size
    tensors.sort(key=lambda t: (-_ITEMSIZE[t[1]], t[0]))
    metadata = {
        "format": "swi-bundle",
        "swi.schema_version": str(manifest["schema_version"]),
        "swi.model": str(manifest["model"]),
        "swi.revision": manifest["revision"] or "",
        "swi.convention": str(manifest["convention"]),
        "swi.manifest_sha256": str(manifest["sha256"]),
        # key order kept (not canonical): the JSON rendering of the recovered manifest is byte-identical
        "swi.manifest": json.dumps(manifest, separators=(",", ":"), ensure_ascii=False, allow_nan=False),
    }
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name, dtype, data, count in tensors:
        header[name] = {"dtype": dtype, "shape": [count], "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text + b"".join(data for _, _, data, _ in tensors)


# ---- decoding ----


def read_safetensors(data: bytes, source: str = "bundle") -> tuple[dict[str, Any], Any, bytes]:
    """The header, the carried manifest (not yet checked) and the tensor bytes of a safetensors bundle."""
    if len(data) < 8:
        raise BundleFormatError(f"{source}: neither JSON nor safetensors (too short)")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise BundleFormatError(f"{source}: neither JSON nor safetensors (bad header length)")
    try:
        header = json.loads(data[8 : 8 + size])
        manifest = json.loads(header["__metadata__"]["swi.manifest"])
    except (ValueError, KeyError, TypeError):
        raise BundleFormatError(f"{source}: not a super-weight bundle (no swi.manifest metadata)") from None
    if not isinstance(header, dict):
        raise BundleFormatError(f"{source}: not a super-weight bundle (the header is not an object)")
    return header, manifest, data[8 + size :]


def decode(data: bytes) -> dict[str, Any]:
    """The JSON manifest a safetensors bundle carries, checked against its hash and its tensors."""
    header, manifest, body = read_safetensors(data, "safetensors bundle")
    check_manifest(manifest)
    expected = {name: (dtype, blob) for name, dtype, blob, _ in safetensors_tensors(manifest)}
    found = {k for k in header if k != "__metadata__"}
    if found != set(expected):
        raise BundleFormatError("safetensors bundle: its tensors do not match its manifest")
    for name, (dtype, blob) in expected.items():
        entry = header[name]
        start, end = entry["data_offsets"]
        if entry["dtype"] != dtype or body[start:end] != blob:
            raise BundleFormatError(f"safetensors bundle: tensor {name} does not match its manifest")
    return dict(manifest)


def decode_tensor(dtype: str, blob: bytes) -> list[float]:
    """The values of one tensor's little-endian bytes (`dtype`: F64, F32, I32, F16 or BF16)."""
    if dtype == "BF16":
        return [struct.unpack("<f", b"\x00\x00" + blob[i : i + 2])[0] for i in range(0, len(blob), 2)]
    code, size = _DECODE[dtype]
    return list(struct.unpack(f"<{len(blob) // size}{code}", blob))


def decode_carried(data: bytes, source: str = "bundle") -> dict[str, Any]:
    """The manifest a safetensors bundle carries, checked against the tensors it also carries."""
    header, manifest, body = read_safetensors(data, source)
    tensors: dict[str, list[float]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        if entry["dtype"] not in (*_DECODE, "BF16") or not 0 <= start <= end <= len(body):
            raise BundleFormatError(f"{source}: tensor {name} is malformed")
        tensors[name] = decode_tensor(entry["dtype"], body[start:end])
    weights = manifest.get("super_weights") if isinstance(manifest, dict) else None
    for weight in weights or []:
        tensor = weight.get("hf_tensor") or f"{down_proj_module(weight['layer'])}.weight"
        found = [
            (int(r), int(c), i)
            for i, (r, c) in enumerate(
                zip(tensors.get(f"{tensor}.rows", []), tensors.get(f"{tensor}.cols", []), strict=True)
            )
        ]
        hits = [i for r, c, i in found if (r, c) == (weight["row"], weight["col"])]
        if not hits:
            raise BundleFormatError(
                f"{source}: {tensor}[{weight['row']}, {weight['col']}] is not in its tensors"
            )
        values = tensors.get(f"{tensor}.values")
        if values is not None and weight.get("value") is not None and values[hits[0]] != weight["value"]:
            raise BundleFormatError(f"{source}: {tensor}.values disagrees with the manifest")
    return dict(manifest) if isinstance(manifest, dict) else {}
