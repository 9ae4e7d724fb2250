"""Record the result documents the tests load, from the real producer (never written by hand).

    .venv/bin/python scripts/record_fixtures.py            # the planted tiny model (seconds)
    .venv/bin/python scripts/record_fixtures.py --smollm2  # also the SmolLM2 detection (loads the model)

- `tests/data/planted_joint.json`: detection and validation document (`contracts.results.DetectionResult`,
  `contracts.validation.ValidationDocument`) of the tiny llama with two super weights that matter only
  jointly (`tests.tiny.plant_joint_super_weights`), validated on the planted corpus;
- `tests/api/web/data/smollm2_detection.json`: `detect()` of SmolLM2-135M-Instruct (Q4_1 GGUF, float32, CPU).

Run it when the detector, the validator or the contracts change what they write.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

PLANTED = REPO_ROOT / "tests" / "data" / "planted_joint.json"
SMOLLM2 = REPO_ROOT / "tests" / "web" / "data" / "smollm2_detection.json"
#: the validation budget of the planted recording (the tests' windows start with BOS)
PLANTED_EXPERIMENTS = ("baseline", "joint", "alone", "controls")


def _write(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8"
    )
    print(f"wrote {path.relative_to(REPO_ROOT)}")


def record_planted() -> None:
    """Detect and validate the planted jointly-acting tiny llama."""
    from indexer.detection.detect import detect
    from indexer.validation.document import validation_document
    from indexer.validation.validate import ValidateConfig, validate
    from tests.indexer.validation.conftest import WINDOW, bos_corpus
    from tests.tiny import plant_joint_super_weights, tiny_model

    loaded = tiny_model("llama", num_layers=4)
    plant_joint_super_weights(loaded)
    detection = detect(loaded)
    config = ValidateConfig(experiments=PLANTED_EXPERIMENTS, window=WINDOW, max_tokens=2 * WINDOW)
    result = validate(loaded, detection, bos_corpus(2), config)
    document = validation_document(result)
    _write(PLANTED, {"detection": detection.to_dict(), "validation": document.model_dump(mode="json")})


def record_smollm2() -> None:
    """Detect the demo model's super weights as the browser tests show them."""
    from indexer.detection.detect import detect
    from indexer.model.demo_model import fetch_demo_model
    from indexer.model.loading import LoadOptions, load_model

    loaded = load_model(str(fetch_demo_model(quiet=True)), None, LoadOptions(device="cpu", dtype="float32"))
    _write(SMOLLM2, detect(loaded).to_dict())


if __name__ == "__main__":
    record_planted()
    if "--smollm2" in sys.argv:
        record_smollm2()
