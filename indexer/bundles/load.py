"""Load a bundle: a `.json` or `.safetensors` file, an http(s) URL, or a coordinate source by model id."""

from __future__ import annotations

import json
import logging
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from bundles import safetensors_codec
from contracts.errors import BundleFormatError
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


def manifest_from_safetensors(data: bytes, source: str = "bundle") -> dict[str, Any]:
    """The manifest a safetensors bundle carries, checked against the tensors it also carries."""
    return safetensors_codec.decode_carried(data, source)
