"""`torchao`: a Python module with `check_model`, a per-module `FqnToConfig` map and a `filter_fn`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bundles.common import LM_HEAD_RULE, FormatSpec, identity, model_check, protected_modules
from bundles.options import RenderOptions
from contracts.manifest import COARSE_NOTE


def render_torchao(manifest: Mapping[str, Any], options: RenderOptions | None = None) -> bytes:
    """A Python module: `check_model`, a per-module `FqnToConfig` map (no `_default`) and a `filter_fn`."""
    ident = identity(manifest)
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


SPEC = FormatSpec("torchao", render_torchao, "text/x-python; charset=utf-8", ".torchao.py")
