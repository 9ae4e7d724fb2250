"""Record the artifact fixtures of `tests/indexer/bundles/test_check.py` from the real quantizers.

    .venv/bin/python tests/tools/record_fixtures.py   # after scripts/tools_venv.sh

Quantizes the tiny planted model with each tool and its bundle (keep=int8) and without, and keeps the
small artifacts under tests/fixtures/quantized/, so the readers are tested on real producers' output.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bundles import render_bundle  # noqa: E402
from indexer.bundles.build import manifest_from_detection  # noqa: E402
from indexer.detection.detect import detect  # noqa: E402
from indexer.model.loading import LoadOptions, load_model  # noqa: E402
from tests.indexer.model.test_loading import save_tiny  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "quantized"
SUFFIX = {"llm-compressor": "llm-compressor.yaml", "torchao": "torchao.py", "gptqmodel": "gptqmodel.json",
          "autoround": "autoround.sh"}  # fmt: skip


def main() -> None:
    """Record every tool's artifact with and without the bundle."""
    python = subprocess.run(
        ["bash", str(ROOT / "scripts" / "tools_venv.sh"), "venv"], capture_output=True, text=True, check=True
    ).stdout.strip()
    corpus = ROOT.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = save_tiny(work / "tiny")
        manifest = manifest_from_detection(detect(load_model(str(model), None, LoadOptions(device="cpu"))))
        FIXTURES.mkdir(parents=True, exist_ok=True)
        (FIXTURES / "tiny.swi.json").write_bytes(render_bundle(manifest, "json").body)
        for tool in sys.argv[1:] or SUFFIX:
            bundle = work / f"tiny.{SUFFIX[tool]}"
            bundle.write_bytes(render_bundle(manifest, tool, group_size=32).body)
            for setting, extra in (("with", ["--bundle", str(bundle)]), ("without", [])):
                out = work / f"{tool}-{setting}"
                command = [python, str(ROOT / "tests" / "tools" / "run_tool.py"), tool, str(model), str(out)]
                command += ["--group-size", "32", "--calibration", str(corpus), *extra]
                out.mkdir(parents=True)
                subprocess.run(command, check=True, cwd=out)  # GPTQModel writes logs/ into its working folder
                target = FIXTURES / f"{tool}-{setting}"
                shutil.rmtree(target, ignore_errors=True)
                artifact = out / "artifact"
                shutil.copytree(
                    artifact, target, ignore=shutil.ignore_patterns("*.jinja", "tokenizer*", "*.txt")
                )
                print(json.dumps({"recorded": str(target.relative_to(ROOT))}))


if __name__ == "__main__":
    main()
