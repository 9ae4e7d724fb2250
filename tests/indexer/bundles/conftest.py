"""The indexer's bundle fixtures: a tiny planted model and the manifest of its detection."""

from __future__ import annotations

from typing import Any

import pytest

from indexer.bundles.build import manifest_from_detection
from indexer.detection.detect import detect
from indexer.model.loading import LoadedModel
from tests.bundles.conftest import PLANTED
from tests.tiny import plant_super_weight, tiny_model


@pytest.fixture
def planted() -> LoadedModel:
    """A tiny llama with one planted super weight at layer 1, row 10, col 20."""
    loaded = tiny_model("llama", num_layers=4)
    plant_super_weight(loaded, *PLANTED, weight=4.0, pre_activation=16.0)
    return loaded


@pytest.fixture
def planted_manifest(planted: LoadedModel) -> dict[str, Any]:
    """The manifest of the planted model's detection."""
    detection = detect(planted)
    assert [sw.coordinates for sw in detection.super_weights] == [PLANTED]
    return manifest_from_detection(detection)
