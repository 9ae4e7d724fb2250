"""On the real SmolLM2 GGUF: the llama.cpp mapping against the file, and the hold-out figure reproduced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import pytest
import torch

from bundles import llama_cpp_mapping, llama_cpp_tensor_types, render_bundle
from contracts.results import DetectionResult
from indexer.bundles.build import manifest_from_detection
from indexer.bundles.bundle import BundleMismatchError
from indexer.bundles.load import load_bundle
from indexer.bundles.protect import protect_super_weights
from indexer.detection.detect import detect
from indexer.model.loading import LoadedModel
from indexer.validation.corpus import file_corpus
from indexer.validation.perplexity import PerplexityEvaluator
from indexer.validation.quantize import Granularity, linear_targets, rtn_quantize_model_
from indexer.validation.validate import ValidateConfig, evaluation_windows, validate
from tests.live_server import serving_folder

pytestmark = pytest.mark.slow

#: a small budget: two windows of 128 tokens (the figure is compared exactly, not statistically)
CONFIG = ValidateConfig(
    experiments=("rtn",),
    window=128,
    max_tokens=256,
    rtn_bits=(4,),
    rtn_granularities=("g128",),
    rtn_variants=("holdout",),  # the clipped variant is checked bit-exactly on the tiny model
)


@pytest.fixture(scope="module")
def detection(smollm2: LoadedModel) -> DetectionResult:
    return detect(smollm2)


@pytest.fixture(scope="module")
def manifest(detection: DetectionResult) -> dict[str, Any]:
    return manifest_from_detection(detection)


def test_llama_cpp_mapping_names_real_tensors_and_indices_inside_them(
    manifest: dict[str, Any], demo_model_file: Path, smollm2: LoadedModel
) -> None:
    reader = gguf.GGUFReader(demo_model_file)
    shapes = {t.name: [int(n) for n in t.shape] for t in reader.tensors}  # `ne` order, fastest first
    mapping = llama_cpp_mapping(manifest)
    assert mapping["tensors"], "SmolLM2 has super weights"
    for tensor in mapping["tensors"]:
        assert tensor["gguf_tensor"] in shapes, tensor["gguf_tensor"]
        ne = shapes[tensor["gguf_tensor"]]
        hf = smollm2.model.get_parameter(tensor["hf_tensor"])
        assert ne == list(reversed(hf.shape)), "GGUF ne order is the HF shape reversed"
        for sw in tensor["super_weights"]:
            col, row = sw["gguf_index"]
            assert 0 <= col < ne[0] and 0 <= row < ne[1]
            assert sw["hf_index"] == [row, col]
    import re

    for line in llama_cpp_tensor_types(manifest).split():
        pattern, kept = line.split("=")
        assert kept == "q8_0"
        assert len([name for name in shapes if re.search(pattern.lower(), name)]) == 1


def test_helper_restores_the_real_model_bit_exactly_and_refuses_a_changed_one(
    smollm2: LoadedModel, manifest: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "smollm2.swi.json"
    path.write_bytes(render_bundle(manifest, "json").body)
    bundle = load_bundle(path)
    resolved = bundle.check(smollm2)
    assert [r.weight.coordinates for r in resolved] == [
        (w["layer"], w["row"], w["col"]) for w in manifest["super_weights"]
    ]
    first = resolved[0]
    weight = smollm2.model.get_submodule(first.module).weight
    original = weight[first.index].clone()
    try:
        with torch.no_grad():
            weight[first.index] = original * 2
        with pytest.raises(BundleMismatchError, match="the model stores"):
            bundle.check(smollm2)
    finally:
        with torch.no_grad():
            weight[first.index] = original


def test_downloaded_bundle_reproduces_the_validation_hold_out_figure_exactly(
    smollm2: LoadedModel,
    detection: DetectionResult,
    manifest: dict[str, Any],
    wikitext_path: Path,
    tmp_path: Path,
) -> None:
    corpus = file_corpus(wikitext_path)
    result = validate(smollm2, detection, corpus, CONFIG)
    rendered = render_bundle(manifest, "json")
    (tmp_path / rendered.filename).write_bytes(rendered.body)
    with serving_folder(tmp_path) as url:
        bundle = load_bundle(f"{url}/{rendered.filename}")

    windows = evaluation_windows(smollm2, corpus, CONFIG)
    assert windows.identity == result.corpus, "same corpus, same budget"
    targets = linear_targets(smollm2.model)
    saved = {t.name: t.weight.detach().clone() for t in targets}
    try:
        with protect_super_weights(smollm2, bundle):
            rtn_quantize_model_(smollm2.model, 4, Granularity(group_size=128))  # the project's own RTN
        evaluator = PerplexityEvaluator(smollm2, windows, result.batch_size, prefix_cache=False)
        measured = evaluator.run(0).perplexity
    finally:
        with torch.no_grad():
            for t in targets:
                t.weight.copy_(saved[t.name])
    assert measured == result.figure("rtn/4bit/g128/holdout").perplexity
    assert measured < 2 * result.baseline_perplexity
