"""The experiment registry and protocol: what each experiment declares, as data an engine can apply."""

from __future__ import annotations

import torch

from contracts.results import DetectionResult
from indexer.model.loading import LoadedModel
from indexer.validation.engines.suite import Suite, edited_weights
from indexer.validation.experiments import EXPERIMENTS, REGISTRY, with_requirements
from indexer.validation.experiments.base import QuantizedActivations, RestoredActivation, WeightEdit
from indexer.validation.validate import ValidateConfig, evaluation_windows
from tests.indexer.validation.conftest import PLANTED, bos_corpus


def test_registry_names_every_experiment_once_in_order() -> None:
    assert tuple(REGISTRY) == EXPERIMENTS and EXPERIMENTS[0] == "baseline"
    for name, experiment in REGISTRY.items():
        assert experiment.name == name
        assert set(experiment.requires) <= set(EXPERIMENTS)
    assert with_requirements(["controls"]) == {"baseline", "controls", "joint"}


def test_variants_declare_first_layer_and_changes(planted: tuple[LoadedModel, DetectionResult]) -> None:
    loaded, detection = planted
    config = ValidateConfig(max_tokens=256, rtn_bits=(4,), rtn_granularities=("g32",))
    suite = Suite(loaded, detection, evaluation_windows(loaded, bos_corpus(2), config), config, None)
    variants = {str(v.key): v for v in suite.plan()}
    joint = variants["zero/joint"]
    assert joint.first_layer == PLANTED[0] and joint.weight_edits == (WeightEdit(*PLANTED, "zero"),)
    assert joint.quantized_weights is None and joint.activation_changes == ()
    restored = variants["zero/joint+sa"]
    assert restored.activation_changes == (RestoredActivation(PLANTED[0], PLANTED[1]),)
    assert REGISTRY["restore_sa"].needs_sites and REGISTRY["w8a8"].needs_sites
    assert variants["scale/2"].weight_edits == (WeightEdit(*PLANTED, "scale", 2.0),)
    for key in ("control/largest", "control/random"):
        control = variants[key]
        assert control.first_layer == min(e.layer for e in control.weight_edits)
        assert all(e.row != PLANTED[1] for e in control.weight_edits)
    plain, rtn = variants["rtn/4bit/g32/plain"], variants["rtn/4bit/g32/holdout"]
    assert plain.first_layer == 0 and plain.prefix_of is None
    # holding out differs from plain RTN only from the super weight's layer on
    assert rtn.first_layer == PLANTED[0] and rtn.prefix_of == plain.key
    assert rtn.quantized_weights is not None and not rtn.weight_edits
    assert variants["rtn/4bit/g32/clipped"].first_layer == 0  # clipping changes every layer
    assert variants["w8a8/holdout"].activation_changes == (QuantizedActivations(8, True),)
    assert variants["w8a8/holdout"].prefix_of == variants["w8a8/naive"].key
    assert variants["w8a8/naive"].activation_changes == (QuantizedActivations(8, False),)
    assert [s.kind for s in suite.weight_sets] == ["super_weights", "largest", "random_matched"]


def test_weight_edits_are_restored_bit_exactly(planted: tuple[LoadedModel, DetectionResult]) -> None:
    loaded, _ = planted
    down = loaded.adapter.down_weight(loaded.model, 1)
    before = down.detach().clone()
    edits = (
        WeightEdit(1, 10, 20, "zero"),
        WeightEdit(1, 3, 4, "add", 0.1),
        WeightEdit(1, 5, 6, "scale", 3.0),
    )
    with edited_weights(loaded.model, loaded.adapter, edits):
        assert float(down[loaded.adapter.storage_index(10, 20)]) == 0.0
        assert float(down[loaded.adapter.storage_index(5, 6)]) == float(before[5, 6] * 3.0)
    assert torch.equal(down, before)
