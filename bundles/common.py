"""What every bundle format shares: the spec a format registers, names, identity headers and zip writing."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bundles.options import RenderOptions
from contracts.identifiers import is_commit_sha, is_model_id, short_revision
from contracts.manifest import COARSE_NOTE, down_proj_module, gguf_down_tensor

#: what every format does with the output head (one rule): it is never quantized by a bundle's recipe
LM_HEAD_RULE = (
    "lm_head stays unquantized in every Python format (llm-compressor ignore, torchao map, GPTQModel and "
    "AutoRound defaults); in a GGUF the output tensor is left to llama.cpp's mix"
)
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)

#: a format's renderer: a checked manifest and the options to the bundle's bytes
Renderer = Callable[[Mapping[str, Any], RenderOptions], bytes]


@dataclass(frozen=True)
class FormatSpec:
    """One bundle format: its name, how it renders, its media type and its file name's suffix."""

    name: str
    render: Renderer
    content_type: str
    suffix: str  # after the `org__name-<sha12>` stem, e.g. `.swi.json`


@dataclass(frozen=True)
class RenderedBundle:
    """One rendered bundle: the bytes to send, their media type and the download filename."""

    body: bytes
    content_type: str
    filename: str

    @property
    def content_disposition(self) -> str:
        """The `Content-Disposition` header value for a download."""
        return f'attachment; filename="{self.filename}"'


# ---- names ----


def module_name(weight: Mapping[str, Any]) -> str:
    """The Hugging Face module that holds a super weight (its tensor name without `.weight`)."""
    tensor = weight.get("hf_tensor")
    if isinstance(tensor, str) and tensor:
        return tensor.removesuffix(".weight")
    return down_proj_module(weight["layer"])


def hf_tensor_name(weight: Mapping[str, Any]) -> str:
    """The Hugging Face tensor name of a super weight's down projection."""
    tensor = weight.get("hf_tensor")
    return tensor if isinstance(tensor, str) and tensor else f"{module_name(weight)}.weight"


def gguf_tensor_name(weight: Mapping[str, Any]) -> str:
    """The GGUF (llama.cpp) tensor name of a super weight's down projection."""
    tensor = weight.get("gguf_tensor")
    return tensor if isinstance(tensor, str) and tensor else gguf_down_tensor(weight["layer"])


def gguf_index(weight: Mapping[str, Any]) -> list[int]:
    """The GGUF index of a super weight in `ne` order (fastest dimension first): `[col, row]`."""
    index = weight.get("gguf_index")
    return list(index) if isinstance(index, list) else [int(weight["col"]), int(weight["row"])]


def protected_modules(manifest: Mapping[str, Any]) -> list[str]:
    """The distinct modules that hold a super weight, in layer order."""
    names = {module_name(w): (w["layer"], module_name(w)) for w in manifest["super_weights"]}
    return [name for _, name in sorted(names.values())]


def regex_for_module(name: str) -> str:
    """An anchored regular expression that matches exactly the module `name`."""
    return "^" + re.escape(name) + "$"


def bundle_filename_stem(manifest: Mapping[str, Any]) -> str:
    """`org__name-<sha12>`: safe as a file name, and it names the model revision."""
    model = _UNSAFE_FILENAME.sub("_", str(manifest["model"]).replace("/", "__")).strip("._") or "model"
    revision = manifest.get("revision")
    if isinstance(revision, str) and revision:
        suffix = _UNSAFE_FILENAME.sub("-", short_revision(revision))
    elif manifest["super_weights"] and all(w.get("status") == "reported" for w in manifest["super_weights"]):
        suffix = "reported"
    else:
        suffix = "unpinned"
    return f"{model}-{suffix}"


# ---- headers ----


def identity(manifest: Mapping[str, Any]) -> dict[str, str]:
    """The fields every tool format names the bundle by: model, revision ('' unpinned), manifest sha256."""
    return {
        "model": str(manifest["model"]),
        "revision": manifest["revision"] or "",
        "manifest_sha256": str(manifest["sha256"]),
    }


def header_lines(manifest: Mapping[str, Any], prefix: str) -> list[str]:
    """The comment lines a text format starts with: identity and the coarse note, after `prefix`."""
    ident = identity(manifest)
    return [
        f"{prefix} Super-weight bundle for {ident['model']} at revision {ident['revision'] or '(unpinned)'}",
        f"{prefix} manifest sha256 {ident['manifest_sha256']}",
        f"{prefix} {COARSE_NOTE}",
    ]


def model_check(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What a tool's snippet checks before quantizing: model id and commit where known, layers, shapes.

    `revision` is only a commit sha (None for GGUF files and published-only coordinates, which no loaded
    model can be compared with); `down_proj_shape` is `[hidden, intermediate]` (`nn.Linear`'s `[out, in]`).
    """
    provenance = manifest.get("provenance") or {}
    revision = manifest.get("revision")
    hidden, intermediate = provenance.get("hidden_size"), provenance.get("intermediate_size")
    layers = provenance.get("num_layers")
    model = str(manifest["model"])
    return {
        # a local source (a GGUF file, a folder) has no hub id a tool could download
        "model": model if is_model_id(model) and not model.endswith(".gguf") else None,
        "revision": revision if isinstance(revision, str) and is_commit_sha(revision) else None,
        "num_layers": layers if isinstance(layers, int) else None,
        "down_proj_shape": (
            [hidden, intermediate] if isinstance(hidden, int) and isinstance(intermediate, int) else None
        ),
        "modules": protected_modules(manifest),
    }


# ---- zip ----


def write_zip(files: Mapping[str, str]) -> bytes:
    """A deflated zip of UTF-8 text files, byte-identical for the same files (fixed timestamps and modes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            # fixed timestamps and modes: the same manifest always gives the same bytes (strong ETags)
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, text.encode("utf-8"))
    return buffer.getvalue()
