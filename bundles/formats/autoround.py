"""`autoround`: a POSIX-shell snippet of auto-round's settings and a check of the model folder."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

from bundles.common import LM_HEAD_RULE, FormatSpec, header_lines, identity, model_check, protected_modules
from bundles.options import RenderOptions, group_size_for, scheme_bits


def render_autoround(manifest: Mapping[str, Any], options: RenderOptions | None = None) -> bytes:
    """A POSIX-shell snippet: `--layer_config` (8 bits) or `--ignore_layers` (full) values, a model check."""
    options = options or RenderOptions()
    ident = identity(manifest)
    modules = protected_modules(manifest)
    check = model_check(manifest)
    layer_config = {m: {"bits": 8} for m in modules} if options.keep == "int8" else {}
    lines = [
        *header_lines(manifest, "#"),
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


SPEC = FormatSpec("autoround", render_autoround, "text/x-shellscript; charset=utf-8", ".autoround.sh")
