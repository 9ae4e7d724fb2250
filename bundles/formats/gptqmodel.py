"""`gptqmodel`: GPTQModel settings whose `dynamic` entries promote or skip the super-weight modules."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bundles.common import (
    LM_HEAD_RULE,
    FormatSpec,
    identity,
    model_check,
    protected_modules,
    regex_for_module,
)
from bundles.options import RenderOptions, group_size_for, scheme_bits
from contracts.manifest import COARSE_NOTE


def render_gptqmodel(manifest: Mapping[str, Any], options: RenderOptions | None = None) -> bytes:
    """GPTQModel settings: group size, `dynamic` entries promoting (`+:`, 8 bits) or skipping (`-:`)."""
    options = options or RenderOptions()
    modules = protected_modules(manifest)
    if options.keep == "full":
        dynamic: dict[str, Any] = {f"-:{regex_for_module(m)}": {} for m in modules}
    else:
        dynamic = {f"+:{regex_for_module(m)}": {"bits": 8} for m in modules}
    document = {
        **identity(manifest),
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


SPEC = FormatSpec("gptqmodel", render_gptqmodel, "application/json", ".gptqmodel.json")
