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
from contracts.identifiers import is_commit_sha, is_model_id, short_revision
from contracts.manifest import (
    COARSE_NOTE,
    check_manifest,
    down_proj_module,
    float32_of,
    gguf_down_tensor,
    read_safetensors,
)

FORMATS = ("json", "safetensors", "llama.cpp", "llm-compressor", "gptqmodel", "autoround", "torchao")
#: GGML types a super-weight tensor may be kept at (llama.cpp's names): never below any mix's choice
LLAMA_CPP_TYPES = ("f32", "f16", "bf16", "q8_0")
#: why the other types are refused: a `--tensor-type` override could make them lower than the mix's choice
LLAMA_CPP_REFUSED_TYPE_REASON = (
    "llama-quantize applies a --tensor-type override instead of its mix's own choice, and the K-quant mixes "
    "already keep some ffn_down tensors at q6_k (Q4_K_M keeps blk.N.ffn_down at Q6_K by itself), so a type "
    "below q8_0 can lower a super-weight tensor; choose q8_0 (8 bits) or f16, bf16, f32 (the exact value)"
)
DEFAULT_LLAMA_CPP_TYPE = "q8_0"
#: how the tool formats keep a super-weight module: at 8 bits, or at full precision (the exact value)
KEEP_MODES = ("int8", "full")
DEFAULT_KEEP = "int8"
#: the llama.cpp type that stores each source dtype exactly
LLAMA_CPP_EXACT_TYPES = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}
DEFAULT_SCHEME = "W4A16"
#: group sizes tried, largest first, when the options name none: the largest dividing every input width wins
GROUP_SIZES = (128, 64, 32, 16)
#: what every format does with the output head (one rule): it is never quantized by a bundle's recipe
LM_HEAD_RULE = (
    "lm_head stays unquantized in every Python format (llm-compressor ignore, torchao map, GPTQModel and "
    "AutoRound defaults); in a GGUF the output tensor is left to llama.cpp's mix"
)
#: safetensors dtype codes of the dtypes super weights are stored in
SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}
_SCHEME_RE = re.compile(r"^W(?P<bits>[2348])A16$")
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


@dataclass(frozen=True)
class RenderOptions:
    """The tool-format options: how super-weight modules are kept, the llama.cpp type, scheme, group size."""

    keep: str = DEFAULT_KEEP
    tensor_type: str | None = None  # llama.cpp; None: q8_0 for keep=int8, the exact type for keep=full
    scheme: str = DEFAULT_SCHEME
    group_size: int | None = None  # None: the largest of GROUP_SIZES dividing the model's input widths


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
    tensor_type: str | None = None,
    scheme: str = DEFAULT_SCHEME,
    keep: str = DEFAULT_KEEP,
    group_size: int | None = None,
) -> RenderedBundle:
    """Render a checked manifest in `format` (one of `FORMATS`); the options are `RenderOptions`' fields."""
    options = RenderOptions(keep=keep, tensor_type=tensor_type, scheme=scheme, group_size=group_size)
    name = check_options(format, options)
    check_manifest(manifest)
    stem = bundle_filename_stem(manifest)
    if name == "json":
        return RenderedBundle(render_json(manifest), "application/json", f"{stem}.swi.json")
    if name == "safetensors":
        return RenderedBundle(
            render_safetensors(manifest), "application/octet-stream", f"{stem}.swi.safetensors"
        )
    if name == "llama.cpp":
        return RenderedBundle(render_llama_cpp(manifest, options), "application/zip", f"{stem}.llama-cpp.zip")
    if name == "llm-compressor":
        return RenderedBundle(
            render_llm_compressor(manifest, options), "application/yaml", f"{stem}.llm-compressor.yaml"
        )
    if name == "gptqmodel":
        return RenderedBundle(
            render_gptqmodel(manifest, options), "application/json", f"{stem}.gptqmodel.json"
        )
    if name == "autoround":
        return RenderedBundle(
            render_autoround(manifest, options), "text/x-shellscript; charset=utf-8", f"{stem}.autoround.sh"
        )
    return RenderedBundle(
        render_torchao(manifest, options), "text/x-python; charset=utf-8", f"{stem}.torchao.py"
    )


def check_options(format: str, options: RenderOptions | None = None) -> str:
    """The normalised format name; `BundleFormatError` for an unknown format or option (check before work)."""
    options = options or RenderOptions()
    name = format.strip().lower()
    if name not in FORMATS:
        raise BundleFormatError(f"unknown bundle format {format!r}; choose from {', '.join(FORMATS)}")
    if options.keep not in KEEP_MODES:
        raise BundleFormatError(f"unknown keep mode {options.keep!r}; choose from {', '.join(KEEP_MODES)}")
    if options.tensor_type is not None:
        _llama_cpp_type(options.tensor_type)
    scheme_bits(options.scheme)
    if options.group_size is not None and (
        options.group_size < 1 or options.group_size & (options.group_size - 1)
    ):
        raise BundleFormatError(f"the group size must be a power of two, got {options.group_size}")
    return name


def scheme_bits(scheme: str) -> int:
    """The weight bits of a weight-only scheme `W<bits>A16`; `BundleFormatError` for any other."""
    match = _SCHEME_RE.match(scheme.strip().upper())
    if match is None:
        raise BundleFormatError(
            f"unsupported scheme {scheme!r}: the bundle renders weight-only int schemes W2A16, W3A16, W4A16 "
            "and W8A16 as explicit config_groups"
        )
    return int(match.group("bits"))


def input_widths(manifest: Mapping[str, Any]) -> tuple[int, ...]:
    """The input widths of the model's linear layers the manifest's provenance names (empty when unknown)."""
    provenance = manifest.get("provenance") or {}
    widths = {provenance.get(key) for key in ("hidden_size", "intermediate_size")}
    heads, head_dim = provenance.get("num_attention_heads"), provenance.get("head_dim")
    if isinstance(heads, int) and isinstance(head_dim, int):
        widths.add(heads * head_dim)  # o_proj's input
    return tuple(sorted(w for w in widths if isinstance(w, int) and w > 0))


def group_size_for(manifest: Mapping[str, Any], requested: int | None = None) -> int:
    """The group size of a grouped scheme: `requested` if it divides every input width, else the largest fit.

    Tools refuse a group size that does not divide a layer's input width (SmolLM2's 576 columns and 128).
    """
    widths = input_widths(manifest)
    if requested is not None:
        bad = [w for w in widths if w % requested]
        if bad:
            raise BundleFormatError(
                f"group size {requested} does not divide the model's input widths "
                f"{', '.join(map(str, bad))}; "
                f"choose one that divides {', '.join(map(str, widths))}"
            )
        return requested
    for size in GROUP_SIZES:
        if all(w % size == 0 for w in widths):
            return size
    raise BundleFormatError(f"no group size of {GROUP_SIZES} divides the input widths {widths}")


def llama_cpp_type_for(manifest: Mapping[str, Any], options: RenderOptions) -> str:
    """The llama.cpp type of super-weight tensors: the option, q8_0, or the type storing them exactly."""
    if options.tensor_type is not None:
        return _llama_cpp_type(options.tensor_type)
    if options.keep == "int8":
        return DEFAULT_LLAMA_CPP_TYPE
    dtypes = {w.get("dtype") for w in manifest["super_weights"]}
    if len(dtypes) == 1 and (dtype := dtypes.pop()) in LLAMA_CPP_EXACT_TYPES:
        return LLAMA_CPP_EXACT_TYPES[str(dtype)]
    return "f32"  # unknown or mixed stored dtypes: f32 holds every float16/bfloat16/float32 value


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


def llama_cpp_mapping(manifest: Mapping[str, Any], options: RenderOptions | None = None) -> dict[str, Any]:
    """HF <-> GGUF names, indices and shapes of every super-weight tensor, with the type it is kept at."""
    kept = llama_cpp_type_for(manifest, options or RenderOptions())
    provenance = manifest.get("provenance") or {}
    hidden, intermediate = provenance.get("hidden_size"), provenance.get("intermediate_size")
    ne = [intermediate, hidden] if isinstance(hidden, int) and isinstance(intermediate, int) else None
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
                "ne": ne,
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
        "lm_head": LM_HEAD_RULE,
        "gguf_index_order": "ne order, fastest dimension first: [col, row] = [input channel, output channel]",
        "tensor_type": kept,
        "tensors": sorted(tensors.values(), key=lambda t: (t["layer"], t["gguf_tensor"])),
    }


def llama_cpp_tensor_types(manifest: Mapping[str, Any], options: RenderOptions | None = None) -> str:
    """The `--tensor-type-file` text: `pattern=type` lines and nothing else (llama.cpp has no comments)."""
    mapping = llama_cpp_mapping(manifest, options)
    return "".join(f"{t['pattern']}={t['type']}\n" for t in mapping["tensors"])


def _llama_cpp_type(tensor_type: str) -> str:
    kept = tensor_type.strip().lower()
    if kept not in LLAMA_CPP_TYPES:
        raise BundleFormatError(
            f"llama.cpp tensor type {tensor_type!r} is refused: {LLAMA_CPP_REFUSED_TYPE_REASON}"
        )
    return kept


def render_llama_cpp(manifest: Mapping[str, Any], options: RenderOptions | None = None) -> bytes:
    """A zip of `tensor-types.txt` (for `llama-quantize --tensor-type-file`), `mapping.json`, `README.txt`."""
    mapping = llama_cpp_mapping(manifest, options)
    types_text = llama_cpp_tensor_types(manifest, options)
    readme = "\n".join(
        [
            *_header_lines(manifest, "#"),
            "",
            "tensor-types.txt keeps every GGUF tensor that holds a super weight at "
            f"{mapping['tensor_type']}; mapping.json names the HF tensor, the GGUF tensor, its `ne` shape",
            "and both indices (GGUF `ne` order is [col, row]). Quantize from an F16/BF16/F32 GGUF of this",
            "revision:",
            "",
            "    llama-quantize --tensor-type-file tensor-types.txt model-f32.gguf model-q4_k_m.gguf Q4_K_M",
            "    swi check model-q4_k_m.gguf --bundle <this bundle as .swi.json>",
            "",
            "The type is never below what any mix would pick (q8_0, or f16/bf16/f32 for the exact value); do",
            "not use the file for an F16/BF16/F32 target, which is above it. The file has no comments on",
            "purpose: llama-quantize reads whitespace-separated pattern=type entries and rejects anything",
            "else.",
            f"lm_head: {LM_HEAD_RULE}.",
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


def _int_weights(bits: int, strategy: str, group_size: int | None) -> dict[str, Any]:
    weights: dict[str, Any] = {"num_bits": bits, "type": "int", "symmetric": True, "strategy": strategy}
    if group_size is not None:
        weights["group_size"] = group_size
    return weights


def llm_compressor_recipe(
    manifest: Mapping[str, Any], options: RenderOptions | None = None
) -> dict[str, Any]:
    """The llm-compressor recipe as data: explicit `config_groups`, super-weight modules at 8 bits or ignored.

    The grouped scheme's group size divides every input width the provenance names; the super-weight
    modules' group quantizes per output channel at 8 bits (keep=int8), or they are in `ignore` (keep=full).
    """
    options = options or RenderOptions()
    bits = scheme_bits(options.scheme)
    modules = [f"re:{_regex_for_module(m)}" for m in protected_modules(manifest)]
    groups: dict[str, Any] = {
        "group_0": {
            "targets": ["Linear"],
            "weights": _int_weights(bits, "group", group_size_for(manifest, options.group_size)),
        }
    }
    ignore = ["lm_head"]
    if options.keep == "full":
        ignore += modules
    elif modules:
        # a module name target is more specific than a class target: compressed-tensors picks this group
        groups["super_weights"] = {"targets": modules, "weights": _int_weights(8, "channel", None)}
    return {
        "quant_stage": {
            "quant_modifiers": {"QuantizationModifier": {"ignore": ignore, "config_groups": groups}}
        }
    }


def render_llm_compressor(manifest: Mapping[str, Any], options: RenderOptions | None = None) -> bytes:
    """An llm-compressor recipe (YAML, written as JSON-compatible flow values) with explicit config_groups."""
    recipe = llm_compressor_recipe(manifest, options)
    check = model_check(manifest)
    lines = [
        *_header_lines(manifest, "#"),
        f"# lm_head: {LM_HEAD_RULE}",
        f"# model check (swi check verifies the saved folder): {json.dumps(check)}",
        *_yaml_lines(recipe, 0),
        "",
    ]
    return "\n".join(lines).encode("utf-8")


def _yaml_lines(value: Mapping[str, Any], indent: int) -> list[str]:
    """Block YAML for nested mappings; lists and scalars as JSON (a YAML subset): no YAML library needed."""
    lines = []
    pad = " " * indent
    for key, item in value.items():
        if isinstance(item, Mapping) and item:
            lines.append(f"{pad}{key}:")
            lines += _yaml_lines(item, indent + 2)
        else:
            lines.append(f"{pad}{key}: {json.dumps(item)}")
    return lines


def render_gptqmodel(manifest: Mapping[str, Any], options: RenderOptions | None = None) -> bytes:
    """GPTQModel settings: group size, `dynamic` entries promoting (`+:`, 8 bits) or skipping (`-:`)."""
    options = options or RenderOptions()
    modules = protected_modules(manifest)
    if options.keep == "full":
        dynamic: dict[str, Any] = {f"-:{_regex_for_module(m)}": {} for m in modules}
    else:
        dynamic = {f"+:{_regex_for_module(m)}": {"bits": 8} for m in modules}
    document = {
        **_identity(manifest),
        "note": COARSE_NOTE,
        "lm_head": LM_HEAD_RULE,
        "bits": scheme_bits(options.scheme),
        "group_size": group_size_for(manifest, options.group_size),
        "model_check": model_check(manifest),
        "dynamic": dynamic,
        "exact": (
            "a skipped module is saved in the dtype GPTQModel loads the model in (bfloat16 by default): "
            "load with torch_dtype=torch.float32 to keep a float32 super weight exact"
        ),
    }
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def render_autoround(manifest: Mapping[str, Any], options: RenderOptions | None = None) -> bytes:
    """A POSIX-shell snippet: `--layer_config` (8 bits) or `--ignore_layers` (full) values, a model check."""
    options = options or RenderOptions()
    ident = _identity(manifest)
    modules = protected_modules(manifest)
    check = model_check(manifest)
    layer_config = {m: {"bits": 8} for m in modules} if options.keep == "int8" else {}
    lines = [
        *_header_lines(manifest, "#"),
        f"# lm_head: {LM_HEAD_RULE}",
        "# usage: . ./this-file && swi_check_model ./model && auto-round --model ./model \\",
        '#            --bits "$SWI_BITS" --group_size "$SWI_GROUP_SIZE" \\',
        '#            --layer_config "$SWI_LAYER_CONFIG" --ignore_layers "$SWI_IGNORE_LAYERS" ...',
        f"SWI_MODEL={shlex.quote(ident['model'])}",
        f"SWI_REVISION={shlex.quote(check['revision'] or '')}",
        f"SWI_BITS={scheme_bits(options.scheme)}",
        f"SWI_GROUP_SIZE={group_size_for(manifest, options.group_size)}",
        f"SWI_LAYER_CONFIG={shlex.quote(json.dumps(layer_config, separators=(',', ':')))}",
        f"SWI_IGNORE_LAYERS={shlex.quote(','.join(modules) if options.keep == 'full' else '')}",
        "# SWI_REVISION is empty for a GGUF file or published-only coordinates: use your own local copy",
        "",
        "# swi_check_model DIR: refuse a model folder whose config.json does not match the bundle",
        "swi_check_model() {",
        "  python3 - \"$1/config.json\" <<'SWI_EOF'",
        "import json, sys",
        f"check = {check!r}",
        "config = json.load(open(sys.argv[1]))",
        "problems = []",
        "if check['num_layers'] is not None and config.get('num_hidden_layers') != check['num_layers']:",
        "    layers = config.get('num_hidden_layers')",
        "    problems.append(f\"{layers} layers, the bundle's model {check['num_layers']}\")",
        "shape = [config.get('hidden_size'), config.get('intermediate_size')]",
        "if check['down_proj_shape'] is not None and shape != check['down_proj_shape']:",
        "    problems.append(f\"down_proj is {shape}, the bundle's {check['down_proj_shape']}\")",
        "if problems:",
        "    sys.exit('bundle mismatch: ' + '; '.join(problems))",
        "SWI_EOF",
        "}",
        "",
    ]
    return "\n".join(lines).encode("utf-8")


def render_torchao(manifest: Mapping[str, Any], options: RenderOptions | None = None) -> bytes:
    """A Python module: `check_model`, a per-module `FqnToConfig` map (no `_default`) and a `filter_fn`."""
    ident = _identity(manifest)
    check = model_check(manifest)
    modules = protected_modules(manifest)
    keep = (options or RenderOptions()).keep
    lines = [
        '"""' + f"Super-weight bundle for {ident['model']} (torchao).",
        "",
        f"{COARSE_NOTE}",
        f"lm_head: {LM_HEAD_RULE}.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any",
        "",
        "#: the hub id, or None (a local file name is no id a loaded model could report)",
        f"MODEL = {check['model']!r}",
        "#: the commit sha, or None (a GGUF file or published-only coordinates: nothing to compare with)",
        f"REVISION = {check['revision']!r}",
        f"MANIFEST_SHA256 = {ident['manifest_sha256']!r}",
        f"NUM_LAYERS = {check['num_layers']!r}",
        "#: [out, in] of each super-weight module's weight (None when the bundle does not record it)",
        f"DOWN_PROJ_SHAPE = {check['down_proj_shape']!r}",
        "#: how the super-weight modules are kept: 'int8' (the keep config) or 'full' (unquantized)",
        f"KEEP = {keep!r}",
        "#: modules that hold a super weight",
        f"SUPER_WEIGHT_MODULES = ({''.join(f'{m!r}, ' for m in modules).rstrip()})",
        "",
        "",
        "def check_model(model: Any) -> None:",
        '    """Raise ValueError unless `model` is the bundle\'s: layers, shapes, id/commit where known."""',
        "    config = getattr(model, 'config', None)",
        "    problems = []",
        "    commit = getattr(config, '_commit_hash', None)",
        "    if REVISION is not None and commit is not None and commit != REVISION:",
        "        problems.append(f'the model is revision {commit}, the bundle {REVISION}')",
        "    name = getattr(config, '_name_or_path', None)",
        "    if MODEL is not None and commit is not None and name and name != MODEL:",
        "        problems.append(f'the model is {name}, the bundle {MODEL!r}')",
        "    layers = getattr(config, 'num_hidden_layers', None)",
        "    if NUM_LAYERS is not None and layers != NUM_LAYERS:",
        "        problems.append(f'the model has {layers} layers, the bundle {NUM_LAYERS}')",
        "    for fqn in SUPER_WEIGHT_MODULES:",
        "        try:",
        "            shape = list(model.get_submodule(fqn).weight.shape)",
        "        except AttributeError:",
        "            problems.append(f'the model has no {fqn}')",
        "            continue",
        "        if DOWN_PROJ_SHAPE is not None and shape != DOWN_PROJ_SHAPE:",
        "            problems.append(f'{fqn} is {shape}, the bundle {DOWN_PROJ_SHAPE}')",
        "    if problems:",
        "        raise ValueError('bundle mismatch: ' + '; '.join(problems))",
        "",
        "",
        "def _linears(model: Any) -> list[str]:",
        "    import torch",
        "",
        "    return [",
        "        fqn",
        "        for fqn, module in model.named_modules()",
        "        if isinstance(module, torch.nn.Linear) and fqn.split('.')[-1] != 'lm_head'",
        "    ]",
        "",
        "",
        "def fqn_to_config(model: Any, config: Any, keep_config: Any = None) -> dict[str, Any]:",
        '    """For `quantize_(model, FqnToConfig(...), filter_fn=None)`: every Linear but lm_head named."""',
        "    keep = keep_config if KEEP == 'int8' else None",
        "    return {fqn: keep if fqn in SUPER_WEIGHT_MODULES else config for fqn in _linears(model)}",
        "",
        "",
        "def quantize_filter(module: Any, fqn: str) -> bool:",
        '    """`filter_fn` for a one-config `quantize_`: Linears but lm_head, super-weight modules."""',
        "    import torch",
        "",
        "    return (",
        "        isinstance(module, torch.nn.Linear)",
        "        and fqn.split('.')[-1] != 'lm_head'",
        "        and fqn not in SUPER_WEIGHT_MODULES",
        "    )",
        "",
    ]
    return "\n".join(lines).encode("utf-8")
