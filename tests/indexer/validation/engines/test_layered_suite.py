"""The layer-major suite on a streamed model gives the in-memory suite's figures, reading each layer once."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from indexer.detection.detect import detect
from indexer.model.hidden_store import HiddenStore
from indexer.model.loading import LoadOptions, load_model, resolve_model
from indexer.model.streaming import StreamedModel, open_model, open_streamed
from indexer.validation.engines.layered import LayeredSuite
from indexer.validation.validate import ValidateConfig, ValidationResult, evaluation_windows, validate
from tests.indexer.detection.test_streamed_detect import planted_checkpoint
from tests.indexer.validation.conftest import bos_corpus

CPU = LoadOptions(device="cpu", dtype="float32")
#: every experiment, with fewer RTN granularities and null sets than the defaults (CPU time)
SMALL = ValidateConfig(
    max_tokens=512,
    rtn_granularities=("tensor", "g32"),
    scale_factors=(0.0, 1.0, 2.0),
    null_sets=3,
    null_column_sets=2,
    bootstrap_samples=100,
)
RELATIVE = 1e-4


def assert_same_figures(streamed: ValidationResult, memory: ValidationResult) -> None:
    """Every figure (and null figure) within 1e-4 relative, per window too; the same summaries."""
    got = {f.key: f for f in (*streamed.figures, *streamed.null_figures)}
    expected = {f.key: f for f in (*memory.figures, *memory.null_figures)}
    assert list(got) == list(expected)
    for key, figure in expected.items():
        other = got[key]
        assert other.reused_from == figure.reused_from, key
        assert math.isclose(other.mean_nll, figure.mean_nll, rel_tol=RELATIVE), key
        for name in ("perplexity", "ratio", "ratio_low", "ratio_high"):
            a, b = getattr(other, name), getattr(figure, name)
            assert (a is None) == (b is None), (key, name)
            if a is not None:
                assert math.isclose(a, b, rel_tol=RELATIVE), (key, name, a, b)
        assert len(other.window_nll) == len(figure.window_nll)
        for a, b in zip(other.window_nll, figure.window_nll, strict=True):
            assert math.isclose(a, b, rel_tol=RELATIVE), key
    assert streamed.verdict.verdict == memory.verdict.verdict
    assert [v.verdict for v in streamed.super_weight_verdicts] == [
        v.verdict for v in memory.super_weight_verdicts
    ]
    assert streamed.super_activation == memory.super_activation
    assert streamed.weight_sets == memory.weight_sets
    assert (streamed.stopwords is None) == (memory.stopwords is None)
    if memory.stopwords is not None and streamed.stopwords is not None:
        assert math.isclose(streamed.stopwords.mass_before, memory.stopwords.mass_before, rel_tol=RELATIVE)
        assert math.isclose(streamed.stopwords.mass_after, memory.stopwords.mass_after, rel_tol=RELATIVE)
        assert [t.token_id for t in streamed.stopwords.gains] == [t.token_id for t in memory.stopwords.gains]


def _both(folder: Path, config: ValidateConfig, **kwargs: int) -> tuple[ValidationResult, ValidationResult]:
    memory_model = load_model(str(folder), options=CPU)
    detection = detect(memory_model)
    memory = validate(memory_model, detection, bos_corpus(4), config)
    streamed_model = open_streamed(resolve_model(str(folder), options=CPU))
    streamed = validate(streamed_model, detection, bos_corpus(4), config, **kwargs)
    _assert_released(streamed_model)
    return streamed, memory


def _assert_released(streamed: StreamedModel) -> None:
    assert all(p.device.type == "meta" for p in streamed.layers.parameters()), (
        "a decoder layer stayed resident"
    )
    for name, module in streamed.loaded.model.named_modules():
        assert not module._forward_hooks and not module._forward_pre_hooks, f"hook left on {name}"
        assert "forward" not in module.__dict__, f"forward stub left on {name}"


@pytest.mark.parametrize("model_type", ["llama", "gemma2", "gpt2", "falcon", "phi3"])
def test_layer_major_suite_equals_the_in_memory_suite(tmp_path: Path, model_type: str) -> None:
    streamed, memory = _both(planted_checkpoint(tmp_path, model_type), SMALL)
    assert len(memory.super_weights) >= 2  # joint, alone, leave-one-out and restore all differ
    assert_same_figures(streamed, memory)


def test_several_batches_and_hidden_states_spilled_to_a_file(tmp_path: Path) -> None:
    """Two windows a batch (W8A8 quantizes each batch's inputs per tensor) and a budget of one state."""
    config = ValidateConfig(**{**SMALL.__dict__, "batch_size": 2})
    streamed, memory = _both(planted_checkpoint(tmp_path, "llama"), config, hidden_memory=128 * 64 * 4 * 2)
    assert_same_figures(streamed, memory)
    assert streamed.batch_size == memory.batch_size == 2
    assert streamed.timing.prefix_cache_bytes <= 128 * 64 * 4 * 2


def test_each_layer_is_read_once_per_suite(tmp_path: Path) -> None:
    folder = planted_checkpoint(tmp_path, "llama")
    memory_model = load_model(str(folder), options=CPU)
    detection = detect(memory_model)
    streamed = open_streamed(resolve_model(str(folder), options=CPU))
    windows = evaluation_windows(streamed.loaded, bos_corpus(4), SMALL)
    suite = LayeredSuite(streamed, detection, windows, SMALL, None)
    suite.run()
    checkpoint = streamed.checkpoint
    layers = sum(checkpoint.nbytes(name) for entries in streamed.layer_tensors for _, name in entries)
    down = f"{streamed.adapter.down_proj}.weight"
    downs = sum(checkpoint.nbytes(dict(entries)[down]) for entries in streamed.layer_tensors)
    # every layer once; the planning reads the down projections (the controls' largest weights) once more
    assert suite.bytes_read == layers + downs


def test_auto_streams_below_the_memory_budget_and_gives_the_in_memory_figures(tmp_path: Path) -> None:
    folder = planted_checkpoint(tmp_path, "qwen2")
    memory_model = load_model(str(folder), options=CPU)
    detection = detect(memory_model)
    config = ValidateConfig(experiments=("joint", "alone", "restore_sa", "w8a8"), max_tokens=256)
    memory = validate(memory_model, detection, bos_corpus(2), config)
    budget = resolve_model(str(folder), options=CPU).weight_bytes // 2
    opened = open_model(
        str(folder), options=LoadOptions(device="cpu", dtype="float32", memory_limit_bytes=budget)
    )
    assert opened.engine == "streamed" and "streaming" in opened.note
    streamed = validate(opened.model, detection, bos_corpus(2), config)
    assert_same_figures(streamed, memory)


def test_hidden_store_spills_beyond_its_budget_and_reuses_freed_space() -> None:
    store = HiddenStore(budget=64)
    kept = store.put(torch.arange(8, dtype=torch.float32))  # 32 bytes: in memory
    spilled = [store.put(torch.full((16,), float(i))) for i in range(3)]  # 64 bytes each: to the file
    assert store.resident_bytes == 32 and store.written_bytes == 3 * 64
    assert torch.equal(store.get(kept), torch.arange(8, dtype=torch.float32))
    assert all(torch.equal(store.get(h), torch.full((16,), float(i))) for i, h in enumerate(spilled))
    store.drop(spilled[1])
    again = store.put(torch.full((16,), 7.0))
    assert torch.equal(store.get(again), torch.full((16,), 7.0))
    assert torch.equal(store.get(spilled[2]), torch.full((16,), 2.0))
    store.close()


def test_hidden_store_keeps_states_in_recycled_slots_of_their_own() -> None:
    store = HiddenStore(budget=1 << 20)
    source = torch.randn(2, 3, 4)
    first = store.put(source)
    kept = store.get(first)
    # a copy in a slot of its own: the caller's tensor can be freed or reused at once
    assert torch.equal(kept, source) and kept.data_ptr() != source.data_ptr() and kept.dtype == source.dtype
    source.zero_()
    assert not torch.equal(kept, source)
    pointer = kept.data_ptr()
    store.drop(first)
    second = store.put(torch.ones(2, 3, 4))
    assert store.get(second).data_ptr() == pointer  # the freed slot serves the next state of its size
    assert torch.equal(store.get(second), torch.ones(2, 3, 4))
    other = store.put(torch.ones(5, dtype=torch.bfloat16))  # another size: a slot of its own
    assert store.get(other).dtype == torch.bfloat16 and store.resident_bytes == 96 + 10
    store.close()
