"""Figure keys through a validation run: the validator keys every figure by `FigureKey`, its JSON and the
stored document carry the text forms, and both read back to the same keys."""

from __future__ import annotations

import json

from contracts.validation import FigureKey
from indexer.detection.detect import detect
from indexer.validation.document import validation_document
from indexer.validation.validate import ValidateConfig, ValidationResult, validate
from tests.indexer.validation.conftest import WINDOW, bos_corpus
from tests.tiny import plant_joint_super_weights, tiny_model


def test_null_sets_and_leave_one_out_are_keyed_by_figure_keys() -> None:
    loaded = tiny_model("llama", num_layers=4)
    members = plant_joint_super_weights(loaded)
    detection = detect(loaded)
    assert [sw.coordinates for sw in detection.super_weights] == list(members)
    config = ValidateConfig(
        experiments=("null", "leave_one_out"), max_tokens=2 * WINDOW, null_sets=2, null_column_sets=1
    )
    result = validate(loaded, detection, bos_corpus(2), config)

    drawn = [FigureKey.null("random", 0), FigureKey.null("random", 1), FigureKey.null("column", 0)]
    assert [f.key for f in result.null_figures] == drawn
    assert {FigureKey.without(c) for c in members} <= {f.key for f in result.figures}
    assert result.verdict.null is not None
    assert (result.verdict.null.random_sets, result.verdict.null.column_sets) == (2, 1)

    data = json.loads(result.to_json())
    assert [f["key"] for f in data["null_figures"]] == ["null/random/0", "null/random/1", "null/column/0"]
    assert "zero/joint-without/{}-{}-{}".format(*members[0]) in {f["key"] for f in data["figures"]}
    assert ValidationResult.from_dict(data) == result

    document = validation_document(result)
    kept = [m for m in document.results if m.experiment == "leave_one_out"]
    assert [m.figure for m in kept] == [FigureKey.without(c) for c in members]
    # a leave-one-out figure decides the set, not the member it keeps
    assert all(m.coordinates is None and m.parameters["key"] == str(m.figure) for m in kept)
