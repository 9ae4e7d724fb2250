"""Coordinate bundles: the schema-versioned JSON manifest and its renderings for quantization tools.

Pure functions from a manifest dict to bytes (the standard library and `contracts`, no torch and no
database), so the API, the CLI, the client and tests render the same bytes from the same manifest. The
manifest schema (version 1) is documented in `docs/bundles.md`; its model, hash and checks are
`contracts.manifest`, which `indexer.bundles` calls too.

- `bundles.registry`: `FORMATS`, `render_bundle`, `check_options`; one module per format in
  `bundles.formats`, each registering a `FormatSpec`.
- `bundles.options`: `RenderOptions` and their checks; `bundles.common`: names, headers, zip writing.
- `bundles.safetensors_codec`: the one safetensors codec (manifest <-> bytes).

Every tool format except `json` and `safetensors` is *coarse*: no mainstream quantizer takes single
weights, so they keep each whole module (down projection) that holds a super weight at a higher
precision. The per-weight hold-out is `indexer.bundles.protect_super_weights`.
"""

from bundles.common import (
    LM_HEAD_RULE,
    FormatSpec,
    RenderedBundle,
    bundle_filename_stem,
    gguf_index,
    gguf_tensor_name,
    hf_tensor_name,
    model_check,
    module_name,
    protected_modules,
)
from bundles.formats.autoround import render_autoround
from bundles.formats.gptqmodel import render_gptqmodel
from bundles.formats.json_manifest import render_json
from bundles.formats.llama_cpp import (
    llama_cpp_mapping,
    llama_cpp_pattern,
    llama_cpp_tensor_types,
    render_llama_cpp,
)
from bundles.formats.llm_compressor import llm_compressor_recipe, render_llm_compressor
from bundles.formats.safetensors_bundle import render_safetensors
from bundles.formats.torchao import render_torchao
from bundles.options import (
    DEFAULT_KEEP,
    DEFAULT_LLAMA_CPP_TYPE,
    DEFAULT_SCHEME,
    GROUP_SIZES,
    KEEP_MODES,
    LLAMA_CPP_EXACT_TYPES,
    LLAMA_CPP_REFUSED_TYPE_REASON,
    LLAMA_CPP_TYPES,
    RenderOptions,
    group_size_for,
    input_widths,
    llama_cpp_type_for,
    scheme_bits,
)
from bundles.registry import FORMATS, REGISTRY, check_options, render_bundle
from bundles.safetensors_codec import SAFETENSORS_DTYPES, safetensors_tensors
from bundles.safetensors_codec import decode as manifest_from_safetensors

__all__ = [
    "DEFAULT_KEEP",
    "DEFAULT_LLAMA_CPP_TYPE",
    "DEFAULT_SCHEME",
    "FORMATS",
    "GROUP_SIZES",
    "KEEP_MODES",
    "LLAMA_CPP_EXACT_TYPES",
    "LLAMA_CPP_REFUSED_TYPE_REASON",
    "LLAMA_CPP_TYPES",
    "LM_HEAD_RULE",
    "REGISTRY",
    "SAFETENSORS_DTYPES",
    "FormatSpec",
    "RenderOptions",
    "RenderedBundle",
    "bundle_filename_stem",
    "check_options",
    "gguf_index",
    "gguf_tensor_name",
    "group_size_for",
    "hf_tensor_name",
    "input_widths",
    "llama_cpp_mapping",
    "llama_cpp_pattern",
    "llama_cpp_tensor_types",
    "llama_cpp_type_for",
    "llm_compressor_recipe",
    "manifest_from_safetensors",
    "model_check",
    "module_name",
    "protected_modules",
    "render_autoround",
    "render_bundle",
    "render_gptqmodel",
    "render_json",
    "render_llama_cpp",
    "render_llm_compressor",
    "render_safetensors",
    "render_torchao",
    "safetensors_tensors",
    "scheme_bits",
]
