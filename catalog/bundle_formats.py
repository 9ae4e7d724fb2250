"""Coordinate bundles: the schema-versioned JSON manifest and its renderings for quantization tools.

Pure functions from a manifest dict to bytes (the standard library and `contracts`), so the API, the CLI
and tests render the same bytes from the same manifest. The manifest schema (version 1) is documented in
`docs/bundles.md`; its model, hash and checks are `contracts.manifest`, which `indexer.bundles` calls too.

Every tool format except `json` and `safetensors` is *coarse*: no mainstream quantizer takes single
weights, so they keep each whole module (down projection) that holds a super weight at a higher
precision. The per-weight hold-out is `indexer.bundles.protect_super_weights`.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import struct
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.errors import BundleFormatError
from contracts.identifiers import short_revision
from contracts.manifest import COARSE_NOTE, check_manifest, float32_of, read_safetensors

FORMATS = ("json", "safetensors", "llama.cpp", "llm-compressor", "gptqmodel", "autoround", "torchao")
#: higher-precision GGML types a super-weight tensor may be kept at (llama.cpp's lower-case type names)
LLAMA_CPP_TYPES = ("f32", "f16", "bf16", "q8_0", "q6_k", "q5_k", "q5_1", "q5_0")
DEFAULT_LLAMA_CPP_TYPE = "q8_0"
DEFAULT_SCHEME = "W4A16"
#: safetensors dtype codes of the dtypes super weights are stored in
SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}
_SCHEME_RE = re.compile(r"^[A-Za-z0-9_]{1,40}$")
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


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


def module_name(weight: Mapping[str, Any]) -> str:
    """The Hugging Face module that holds a super weight (its tensor name without `.weight`)."""
    tensor = weight.get("hf_tensor")
    if isinstance(tensor, str) and tensor:
        return tensor.removesuffix(".weight")
    return f"model.layers.{weight['layer']}.mlp.down_proj"


def hf_tensor_name(weight: Mapping[str, Any]) -> str:
    """The Hugging Face tensor name of a super weight's down projection."""
    tensor = weight.get("hf_tensor")
    return tensor if isinstance(tensor, str) and tensor else f"{module_name(weight)}.weight"


def gguf_tensor_name(weight: Mapping[str, Any]) -> str:
    """The GGUF (llama.cpp) tensor name of a super weight's down projection."""
    tensor = weight.get("gguf_tensor")
    return tensor if isinstance(tensor, str) and tensor else f"blk.{weight['layer']}.ffn_down.weight"


def gguf_index(weight: Mapping[str, Any]) -> list[int]:
    """The GGUF index of a super weight in `ne` order (fastest dimension first): `[col, row]`."""
    index = weight.get("gguf_index")
    return list(index) if isinstance(index, list) else [int(weight["col"]), int(weight["row"])]


def protected_modules(manifest: Mapping[str, Any]) -> list[str]:
    """The distinct modules that hold a super weight, in layer order."""
    names = {module_name(w): (w["layer"], module_name(w)) for w in manifest["super_weights"]}
    return [name for _, name in sorted(names.values())]


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


# ---- rendering ----


def render_bundle(
    manifest: Mapping[str, Any],
    format: str,
    *,
    tensor_type: str = DEFAULT_LLAMA_CPP_TYPE,
    scheme: str = DEFAULT_SCHEME,
) -> RenderedBundle:
    """Render a checked manifest in `format` (one of `FORMATS`).

    `tensor_type`: the llama.cpp type super-weight tensors are kept at; `scheme`: the llm-compressor scheme.
    """
    name = check_options(format, tensor_type=tensor_type, scheme=scheme)
    check_manifest(manifest)
    stem = bundle_filename_stem(manifest)
    if name == "json":
        return RenderedBundle(render_json(manifest), "application/json", f"{stem}.swi.json")
    if name == "safetensors":
        return RenderedBundle(
            render_safetensors(manifest), "application/octet-stream", f"{stem}.swi.safetensors"
        )
    if name == "llama.cpp":
        return RenderedBundle(
            render_llama_cpp(manifest, tensor_type), "application/zip", f"{stem}.llama-cpp.zip"
        )
    if name == "llm-compressor":
        return RenderedBundle(
            render_llm_compressor(manifest, scheme), "application/yaml", f"{stem}.llm-compressor.yaml"
        )
    if name == "gptqmodel":
        return RenderedBundle(render_gptqmodel(manifest), "application/json", f"{stem}.gptqmodel.json")
    if name == "autoround":
        return RenderedBundle(
            render_autoround(manifest), "text/x-shellscript; charset=utf-8", f"{stem}.autoround.sh"
        )
    return RenderedBundle(render_torchao(manifest), "text/x-python; charset=utf-8", f"{stem}.torchao.py")


def check_options(
    format: str, *, tensor_type: str = DEFAULT_LLAMA_CPP_TYPE, scheme: str = DEFAULT_SCHEME
) -> str:
    """The normalised format name; `BundleFormatError` for an unknown format or option (check before work)."""
    name = format.strip().lower()
    if name not in FORMATS:
        raise BundleFormatError(f"unknown bundle format {format!r}; choose from {', '.join(FORMATS)}")
    if name == "llama.cpp":
        _llama_cpp_type(tensor_type)
    if name == "llm-compressor" and not _SCHEME_RE.match(scheme):
        raise BundleFormatError(f"invalid llm-compressor scheme {scheme!r} (e.g. W4A16, W8A8)")
    return name


def render_json(manifest: Mapping[str, Any]) -> bytes:
    """The manifest as indented UTF-8 JSON (the hash is over the canonical form, not these bytes)."""
    return (json.dumps(manifest, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def _identity(manifest: Mapping[str, Any]) -> dict[str, str]:
    return {
        "model": str(manifest["model"]),
        "revision": manifest["revision"] or "",
        "manifest_sha256": str(manifest["sha256"]),
    }


def _header_lines(manifest: Mapping[str, Any], prefix: str) -> list[str]:
    ident = _identity(manifest)
    return [
        f"{prefix} Super-weight bundle for {ident['model']} at revision {ident['revision'] or '(unpinned)'}",
        f"{prefix} manifest sha256 {ident['manifest_sha256']}",
        f"{prefix} {COARSE_NOTE}",
    ]


# -- safetensors --


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


def render_safetensors(manifest: Mapping[str, Any]) -> bytes:
    """A safetensors file: per source tensor `.rows`/`.cols` (int32), `.values` (stored dtype), `.values_f32`.

    `__metadata__` holds the identifying fields as strings and the whole manifest (compact JSON), so the
    file converts back to the JSON manifest losslessly.
    """
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


_ITEMSIZE = {"F64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2}


def manifest_from_safetensors(data: bytes) -> dict[str, Any]:
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


# -- llama.cpp --


def llama_cpp_pattern(gguf_tensor: str) -> str:
    """An anchored regular expression that names exactly one GGUF tensor (llama.cpp lower-cases patterns)."""
    return "^" + re.escape(gguf_tensor) + "$"


def llama_cpp_mapping(
    manifest: Mapping[str, Any], tensor_type: str = DEFAULT_LLAMA_CPP_TYPE
) -> dict[str, Any]:
    """HF <-> GGUF names and indices of every super-weight tensor, with the type it is kept at."""
    kept = _llama_cpp_type(tensor_type)
    tensors: dict[str, dict[str, Any]] = {}
    for weight in manifest["super_weights"]:
        name = gguf_tensor_name(weight)
        entry = tensors.setdefault(
            name,
            {
                "gguf_tensor": name,
                "hf_tensor": hf_tensor_name(weight),
                "layer": weight["layer"],
                "type": kept,
                "pattern": llama_cpp_pattern(name),
                "super_weights": [],
            },
        )
        entry["super_weights"].append(
            {
                "layer": weight["layer"],
                "row": weight["row"],
                "col": weight["col"],
                "hf_index": [weight["row"], weight["col"]],
                "gguf_index": gguf_index(weight),
                "value": weight.get("value"),
                "status": weight.get("status"),
            }
        )
    return {
        **_identity(manifest),
        "schema_version": manifest["schema_version"],
        "note": COARSE_NOTE,
        "gguf_index_order": "ne order, fastest dimension first: [col, row] = [input channel, output channel]",
        "tensor_type": kept,
        "tensors": sorted(tensors.values(), key=lambda t: (t["layer"], t["gguf_tensor"])),
    }


def llama_cpp_tensor_types(manifest: Mapping[str, Any], tensor_type: str = DEFAULT_LLAMA_CPP_TYPE) -> str:
    """The `--tensor-type-file` text: `pattern=type` lines and nothing else (llama.cpp has no comments)."""
    mapping = llama_cpp_mapping(manifest, tensor_type)
    return "".join(f"{t['pattern']}={t['type']}\n" for t in mapping["tensors"])


def _llama_cpp_type(tensor_type: str) -> str:
    kept = tensor_type.strip().lower()
    if kept not in LLAMA_CPP_TYPES:
        raise BundleFormatError(
            f"unknown llama.cpp tensor type {tensor_type!r}; choose a higher-precision type: "
            + ", ".join(LLAMA_CPP_TYPES)
        )
    return kept


def render_llama_cpp(manifest: Mapping[str, Any], tensor_type: str = DEFAULT_LLAMA_CPP_TYPE) -> bytes:
    """A zip of `tensor-types.txt` (for `llama-quantize --tensor-type-file`), `mapping.json`, `README.txt`."""
    mapping = llama_cpp_mapping(manifest, tensor_type)
    types_text = llama_cpp_tensor_types(manifest, tensor_type)
    readme = "\n".join(
        [
            *_header_lines(manifest, "#"),
            "",
            "tensor-types.txt keeps every GGUF tensor that holds a super weight at "
            f"{mapping['tensor_type']}; mapping.json names the HF tensor, the GGUF tensor and both indices",
            "(GGUF `ne` order is [col, row]). Quantize from an F16/BF16/F32 GGUF of this revision:",
            "",
            "    llama-quantize --tensor-type-file tensor-types.txt model-f16.gguf model-q4_k_m.gguf Q4_K_M",
            "",
            "The file has no comments on purpose: llama-quantize reads whitespace-separated pattern=type",
            "entries and rejects anything else.",
            "",
        ]
    )
    files = {
        "tensor-types.txt": types_text,
        "mapping.json": json.dumps(mapping, indent=2, ensure_ascii=False) + "\n",
        "README.txt": readme,
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            # fixed timestamps and modes: the same manifest always gives the same bytes (strong ETags)
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, text.encode("utf-8"))
    return buffer.getvalue()


# -- Python quantizers --


def _regex_for_module(name: str) -> str:
    return "^" + re.escape(name) + "$"


def render_llm_compressor(manifest: Mapping[str, Any], scheme: str = DEFAULT_SCHEME) -> bytes:
    """An llm-compressor recipe (YAML) whose `ignore` list keeps the super-weight modules unquantized."""
    if not _SCHEME_RE.match(scheme):
        raise BundleFormatError(f"invalid llm-compressor scheme {scheme!r} (e.g. W4A16, W8A8)")
    ignore = ["lm_head", *(f"re:{_regex_for_module(m)}" for m in protected_modules(manifest))]
    lines = [
        *_header_lines(manifest, "#"),
        "quant_stage:",
        "  quant_modifiers:",
        "    QuantizationModifier:",
        '      targets: ["Linear"]',
        f"      scheme: {json.dumps(scheme)}",
        "      ignore:",
        *(f"        - {json.dumps(item)}" for item in ignore),
        "",
    ]
    return "\n".join(lines).encode("utf-8")


def render_gptqmodel(manifest: Mapping[str, Any]) -> bytes:
    """GPTQModel `dynamic` entries: a `-:` (skip) pattern per super-weight module, with the identity."""
    document = {
        **_identity(manifest),
        "note": COARSE_NOTE,
        "dynamic": {f"-:{_regex_for_module(m)}": {} for m in protected_modules(manifest)},
    }
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def render_autoround(manifest: Mapping[str, Any]) -> bytes:
    """A POSIX-shell snippet that sets `SWI_FP_LAYERS`, the value for AutoRound's `--fp_layers`."""
    ident = _identity(manifest)
    lines = [
        *_header_lines(manifest, "#"),
        "# usage: . ./this-file && auto-round --model <local copy of this revision> \\",
        '#            --fp_layers "$SWI_FP_LAYERS"',
        f"SWI_MODEL={shlex.quote(ident['model'])}",
        f"SWI_REVISION={shlex.quote(ident['revision'])}",
        f"SWI_FP_LAYERS={shlex.quote(','.join(protected_modules(manifest)))}",
        "",
    ]
    return "\n".join(lines).encode("utf-8")


def render_torchao(manifest: Mapping[str, Any]) -> bytes:
    """A Python module with a `filter_fn` for `torchao.quantization.quantize_` and a per-module config map."""
    ident = _identity(manifest)
    modules = protected_modules(manifest)
    module_lines = [f"        {m!r}," for m in modules]
    lines = [
        '"""' + f"Super-weight bundle for {ident['model']} (torchao).",
        "",
        f"{COARSE_NOTE}",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any",
        "",
        f"MODEL = {ident['model']!r}",
        f"REVISION = {ident['revision'] or None!r}",
        f"MANIFEST_SHA256 = {ident['manifest_sha256']!r}",
        "#: modules that hold a super weight (kept unquantized)",
        "SUPER_WEIGHT_MODULES = frozenset(",
        "    {",
        *module_lines,
        "    }",
        ")",
        "",
        "",
        "def quantize_filter(module: Any, fqn: str) -> bool:",
        '    """`filter_fn` for torchao\'s `quantize_`: every Linear except the super-weight modules."""',
        "    import torch",
        "",
        "    return isinstance(module, torch.nn.Linear) and fqn not in SUPER_WEIGHT_MODULES",
        "",
        "",
        "def fqn_to_config(default_config: Any) -> dict[str, Any]:",
        '    """A map for torchao\'s `ModuleFqnToConfig`: None keeps a module as it is."""',
        "    return {'_default': default_config, **{fqn: None for fqn in sorted(SUPER_WEIGHT_MODULES)}}",
        "",
    ]
    return "\n".join(lines).encode("utf-8")
