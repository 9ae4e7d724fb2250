"""Fixtures of the validation tests: a tiny model with a planted super weight and a corpus for it."""

from __future__ import annotations

import random

import pytest

from contracts.results import DetectionResult
from indexer.detection.detect import detect
from indexer.model.loading import LoadedModel
from indexer.validation.corpus import Corpus
from tests.tiny import plant_super_weight, tiny_model

#: the tiny models' context; every window starts with BOS so the planted spike fires in each
WINDOW = 128
PLANTED = (1, 10, 20)


def bos_corpus(windows: int, seed: int = 0) -> Corpus:
    """Text the tiny character tokenizer cuts into `windows` 128-token windows, each opening with BOS."""
    rng = random.Random(seed)
    segments = [
        "".join(rng.choice("abcdefghij klmnopqrst.,") for _ in range(WINDOW - 1)) for _ in range(windows)
    ]
    # the tokenizer adds the first BOS itself; "<bos>" in the text is the special token
    return Corpus.from_text("tiny-bos", "<bos>".join(segments))


@pytest.fixture
def planted() -> tuple[LoadedModel, DetectionResult]:
    """A tiny llama with one planted super weight at layer 1, row 10, col 20, and its detection."""
    loaded = tiny_model("llama", num_layers=4)
    plant_super_weight(loaded, *PLANTED, weight=4.0, pre_activation=16.0)
    detection = detect(loaded)
    assert [sw.coordinates for sw in detection.super_weights] == [PLANTED]
    return loaded, detection
