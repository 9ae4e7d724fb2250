"""Perplexity: the value itself, batching, and the prefix cache that must change nothing but the time."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from indexer.errors import InvalidInputError
from indexer.model.ablation import zeroed_weights
from indexer.validation.corpus import builtin_corpus, token_windows
from indexer.validation.perplexity import (
    HEAD_CHUNK_TOKENS,
    PerplexityEvaluator,
    auto_batch_size,
    default_window,
)
from tests.tiny import tiny_model


def _windows(loaded, window: int = 64, tokens: int = 256):  # type: ignore[no-untyped-def]
    return token_windows(builtin_corpus(), loaded.tokenizer, window, tokens)


def test_perplexity_is_exp_of_the_mean_next_token_loss() -> None:
    loaded = tiny_model("llama", num_layers=2)
    windows = _windows(loaded)
    result = PerplexityEvaluator(loaded, windows, batch_size=3).run()
    total, count = 0.0, 0
    with torch.inference_mode():
        for row in windows.input_ids:
            logits = loaded.model(input_ids=row.view(1, -1), use_cache=False).logits[0, :-1]
            total += float(F.cross_entropy(logits, row[1:], reduction="sum"))
            count += row.numel() - 1
    assert result.predicted_tokens == count == 4 * 63
    assert result.perplexity == pytest.approx(math.exp(total / count), rel=1e-5)
    assert result.prefix_layer is None


def test_batch_size_does_not_change_the_figure() -> None:
    loaded = tiny_model("llama", num_layers=2)
    windows = _windows(loaded)
    one = PerplexityEvaluator(loaded, windows, batch_size=1).run()
    four = PerplexityEvaluator(loaded, windows, batch_size=4).run()
    assert one.perplexity == pytest.approx(four.perplexity, rel=1e-5)


@pytest.mark.parametrize(
    "model_type", ["llama", "gpt2", "opt", "phi3", "gpt_neox", "falcon", "gemma2", "qwen3"]
)
def test_prefix_cache_reproduces_the_full_pass_exactly(model_type: str) -> None:
    loaded = tiny_model(model_type, num_layers=4)
    evaluator = PerplexityEvaluator(loaded, _windows(loaded), batch_size=2)
    evaluator.want_prefix([2, 0])
    baseline = evaluator.run()
    assert evaluator.cached_layers == (2,)
    assert evaluator.run(start_layer=3).mean_nll == baseline.mean_nll  # a later start reuses layer 2
    with zeroed_weights(loaded.model, loaded.adapter, [(2, 5, 7), (3, 1, 2)]):
        cached = evaluator.run(start_layer=2)
        full = evaluator.run(start_layer=0)
    assert cached.prefix_layer == 2 and full.prefix_layer is None
    assert cached.mean_nll == full.mean_nll != baseline.mean_nll
    assert (evaluator.full_passes, evaluator.cached_passes) == (2, 2)
    for index, layer in enumerate(loaded.adapter.decoder_layers(loaded.model)):
        assert "forward" not in layer.__dict__, f"stub left on layer {index}"
    for name, module in loaded.model.named_modules():
        assert not module._forward_hooks and not module._forward_pre_hooks, f"hook left on {name}"


def test_a_pass_starts_from_another_variants_recorded_input_and_frees_it() -> None:
    loaded = tiny_model("llama", num_layers=4)
    evaluator = PerplexityEvaluator(loaded, _windows(loaded), batch_size=2)
    evaluator.want_prefix([2])  # the baseline's
    evaluator.want_prefix([2], source="first")  # the pass named "first", for one later pass
    evaluator.run()
    baseline_bytes = evaluator.cache_bytes
    with zeroed_weights(loaded.model, loaded.adapter, [(0, 5, 7)]):
        first = evaluator.run(key="first")  # a full pass: records its own input of layer 2
        assert first.prefix_layer is None and evaluator.cache_bytes == 2 * baseline_bytes
        with zeroed_weights(loaded.model, loaded.adapter, [(2, 1, 2)]):
            cached = evaluator.run(start_layer=2, source="first", key="second")
            full = evaluator.run(start_layer=0, key="full")
    assert cached.prefix_layer == 2 and full.prefix_layer is None
    assert cached.mean_nll == full.mean_nll  # from layer 0's zeroing, not from the baseline's layer 2
    assert evaluator.cache_bytes == baseline_bytes  # its one use done, the recording is freed
    assert evaluator.cached_layers == (2,)


def test_prefix_cache_respects_its_memory_budget() -> None:
    loaded = tiny_model("llama", num_layers=3)
    evaluator = PerplexityEvaluator(loaded, _windows(loaded), prefix_cache_memory=1024)
    evaluator.want_prefix([1])
    evaluator.run()
    assert evaluator.cached_layers == ()
    assert evaluator.run(start_layer=1).prefix_layer is None


def test_defaults() -> None:
    loaded = tiny_model("llama", num_layers=1)
    assert default_window(loaded.model) == 128  # the tiny model's context is shorter than 2048
    assert default_window(loaded.model, max_tokens=64) == 64  # a smaller budget sets the default window
    assert default_window(loaded.model, max_tokens=4096) == 128
    assert auto_batch_size(windows=10, window=2048, vocab=50_000, memory=1 << 30) == 1
    assert auto_batch_size(windows=3, window=128, vocab=100) == 3
    with pytest.raises(InvalidInputError):
        PerplexityEvaluator(loaded, _windows(loaded), batch_size=0)


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "opt", "phi", "falcon", "gemma2", "gemma3_text"])
def test_logits_in_chunks_give_the_figure_of_whole_logits(model_type: str) -> None:
    loaded = tiny_model(model_type, num_layers=2)
    windows = _windows(loaded)
    whole = PerplexityEvaluator(loaded, windows, batch_size=2, chunked_logits=False)
    # a logits budget of 40 positions splits every batch into chunks that straddle windows
    vocab = loaded.model.get_output_embeddings().weight.shape[0]
    chunked = PerplexityEvaluator(loaded, windows, batch_size=2, logits_memory=40 * vocab * 12)
    assert not whole.chunked_logits and chunked.chunked_logits and chunked.chunk_tokens == 40
    seen: list[tuple[int, int]] = []

    def observe(index: int, logits: torch.Tensor, targets: torch.Tensor) -> None:
        assert logits.shape[:2] == targets.shape and logits.shape[-1] == vocab
        seen.append((index, targets.numel()))

    expected = whole.run()
    got = chunked.run(observer=observe)
    assert got.predicted_tokens == expected.predicted_tokens
    assert got.mean_nll == pytest.approx(expected.mean_nll, rel=1e-6)
    assert sum(n for _, n in seen) == expected.predicted_tokens and {i for i, _ in seen} == {0, 1}
    assert "forward" not in loaded.model.get_output_embeddings().__dict__


def test_a_large_logits_budget_still_computes_the_loss_in_small_chunks() -> None:
    loaded = tiny_model("llama", num_layers=2)
    windows = _windows(loaded, window=128, tokens=512)
    # the default budget would hold every position of the batch's 512 at once
    evaluator = PerplexityEvaluator(loaded, windows, batch_size=4)
    small = PerplexityEvaluator(loaded, windows, batch_size=4, logits_memory=32 * 12 * 1024)
    assert evaluator.chunk_tokens == HEAD_CHUNK_TOKENS < 4 * 128
    assert evaluator.run().mean_nll == pytest.approx(small.run().mean_nll, rel=1e-6)


def test_observers_see_the_logits_before_the_loss_overwrites_them() -> None:
    loaded = tiny_model("llama", num_layers=2)
    windows = _windows(loaded, window=32, tokens=128)
    vocab = loaded.model.get_output_embeddings().weight.shape[0]
    # 24-position chunks: some end a window (a view of the rows), some straddle two (a masked copy)
    evaluator = PerplexityEvaluator(loaded, windows, batch_size=4, logits_memory=24 * vocab * 12)
    seen: list[torch.Tensor] = []
    result = evaluator.run(observer=lambda _i, logits, _t: seen.append(logits[0].clone()))
    with torch.inference_mode():
        logits = loaded.model(input_ids=windows.input_ids, use_cache=False).logits[:, :-1]
    expected = logits.reshape(-1, vocab)  # (windows * 31, vocab): every predicted position, in order
    got = torch.cat(seen)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    loss = F.cross_entropy(expected, windows.input_ids[:, 1:].reshape(-1), reduction="mean")
    assert result.mean_nll == pytest.approx(float(loss), rel=1e-5)


def test_a_model_that_changes_its_logits_unknowingly_keeps_whole_logits() -> None:
    loaded = tiny_model("llama", num_layers=2)
    windows = _windows(loaded)
    expected = PerplexityEvaluator(loaded, windows, chunked_logits=False).run()

    def scaled(_module: torch.nn.Module, _args: object, output: torch.Tensor) -> torch.Tensor:
        return output * 4.0  # as a model that scales logits after its head would

    from indexer.model.hooks import forward_hooks

    with forward_hooks(loaded.model, {"lm_head": scaled}):
        evaluator = PerplexityEvaluator(loaded, windows)
        assert not evaluator.chunked_logits
        unchanged = PerplexityEvaluator(loaded, windows, chunked_logits=False).run()
        assert evaluator.run().mean_nll == unchanged.mean_nll != expected.mean_nll


def test_chunked_logits_batch_whole_windows_by_tokens() -> None:
    loaded = tiny_model("llama", num_layers=1)
    windows = _windows(loaded, window=64, tokens=1024)
    assert PerplexityEvaluator(loaded, windows).batch_size == 16  # every window: 1,024 <= 8,192 tokens
    assert PerplexityEvaluator(loaded, windows, chunked_logits=False, logits_memory=1).batch_size == 1
