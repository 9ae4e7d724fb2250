"""Load a bundle: a `.json` or `.safetensors` file, an http(s) URL, or a coordinate source by model id."""

from __future__ import annotations

import json
import logging
import struct
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from contracts.errors import BundleFormatError
from contracts.manifest import down_proj_module, read_safetensors
from indexer.bundles.bundle import (
    Bundle,
    BundleMismatchError,
    BundleUnavailableError,
    CoordinateSource,
    parse_manifest,
)

#: bundles are small; anything larger is not a bundle
MAX_BUNDLE_BYTES = 64 * 2**20

logger = logging.getLogger("indexer.bundles")


def load_bundle(
    path_or_url: str | Path,
    *,
    timeout_s: float = 30.0,
    source: CoordinateSource | None = None,
    revision: str | None = None,
) -> Bundle:
    """Load a `.json` or `.safetensors` bundle from a file or an http(s) URL, checking its sha256.

    With `source`, `path_or_url` is a model id (`org/name`) whose manifest the source gives (at `revision`).
    """
    if source is not None:
        return bundle_from_source(str(path_or_url), source, revision)
    text = str(path_or_url)
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    if scheme in ("http", "https"):
        data = _download(text, timeout_s)
    elif scheme and len(scheme) > 1 and not Path(text).exists():
        raise BundleUnavailableError(
            f"unsupported bundle URL scheme {scheme!r}: use a file path, http or https"
        )
    else:
        path = Path(text).expanduser()
        if not path.is_file():
            raise BundleUnavailableError(f"bundle file not found: {path}")
        if path.stat().st_size > MAX_BUNDLE_BYTES:
            raise BundleFormatError(f"{path} is larger than any bundle ({MAX_BUNDLE_BYTES // 2**20} MiB)")
        data = path.read_bytes()
    return parse_bundle_bytes(data, source=text)


def bundle_from_source(model_id: str, source: CoordinateSource, revision: str | None = None) -> Bundle:
    """The checked bundle of `model_id` from a coordinate source, logging the revision it was measured on."""
    bundle = parse_manifest(dict(source.bundle_manifest(model_id, revision)))
    if bundle.model.lower() != model_id.lower():
        raise BundleMismatchError(f"asked for the coordinates of {model_id}, got those of {bundle.model}")
    logger.info(
        "coordinates of %s: %s",
        bundle.model,
        f"measured at revision {bundle.revision}" if bundle.revision else "published only (never measured)",
    )
    return bundle


def _download(url: str, timeout_s: float) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": "application/json, application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            data: bytes = response.read(MAX_BUNDLE_BYTES + 1)
    except OSError as exc:
        raise BundleUnavailableError(f"could not download the bundle from {url}: {exc}") from None
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleFormatError(f"{url} is larger than any bundle ({MAX_BUNDLE_BYTES // 2**20} MiB)")
    return data


def parse_bundle_bytes(data: bytes, source: str = "bundle") -> Bundle:
    """A `Bundle` from the bytes of a JSON or safetensors bundle (told apart by their first bytes)."""
    if data.lstrip()[:1] == b"{":
        try:
            manifest = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BundleFormatError(f"{source}: not valid JSON: {exc}") from None
        return parse_manifest(manifest)
    return parse_manifest(manifest_from_safetensors(data, source))


_DECODE = {"F64": ("d", 8), "F32": ("f", 4), "I32": ("i", 4), "F16": ("e", 2)}


def _decode_tensor(dtype: str, blob: bytes) -> list[float]:
    if dtype == "BF16":
        return [struct.unpack("<f", b"\x00\x00" + blob[i : i + 2])[0] for i in range(0, len(blob), 2)]
    code, size = _DECODE[dtype]
    return list(struct.unpack(f"<{len(blob) // size}{code}", blob))


def manifest_from_safetensors(data: bytes, source: str = "bundle") -> dict[str, Any]:
    """The manifest a safetensors bundle carries, checked against the tensors it also carries."""
    header, manifest, body = read_safetensors(data, source)
    tensors: dict[str, list[float]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        if entry["dtype"] not in (*_DECODE, "BF16") or not 0 <= start <= end <= len(body):
            raise BundleFormatError(f"{source}: tensor {name} is malformed")
        tensors[name] = _decode_tensor(entry["dtype"], body[start:end])
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
