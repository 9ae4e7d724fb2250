"""The sliced head's losses are the cross-entropy's, from one read of the head a slice at a time."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from indexer.model.loading import LoadOptions, resolve_model
from indexer.model.streaming import open_streamed
from indexer.validation.engines.sliced_head import SLICE_LOGIT_BYTES, SlicedHead
from indexer.validation.engines.streamed import StreamedEvaluator
from indexer.validation.experiments.stopwords import _Meter
from indexer.validation.perplexity import IGNORED, SliceObserver
from indexer.validation.validate import ValidateConfig, evaluation_windows
from tests.indexer.detection.test_streamed_detect import planted_checkpoint
from tests.indexer.validation.conftest import bos_corpus

CPU = LoadOptions(device="cpu", dtype="float32")


def _expected(
    head: nn.Linear, softcap: float | None, rows: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    logits = head(rows)
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, targets, ignore_index=IGNORED, reduction="none").double()


@pytest.mark.parametrize(("bias", "softcap"), [(False, None), (True, None), (False, 30.0)])
def test_losses_are_the_cross_entropy_over_slices_and_chunks(bias: bool, softcap: float | None) -> None:
    torch.manual_seed(0)
    head = nn.Linear(16, 250, bias=bias)
    sliced = SlicedHead.of(head, softcap)
    assert sliced is not None
    states = [torch.randn(37, 16) * 3, torch.randn(5, 16)]  # (positions, hidden)
    targets = [torch.randint(250, (37,)), torch.randint(250, (5,))]
    targets[0][[3, 36]] = IGNORED
    memory = 2 * 40 * 16 * 4  # slices of 40 rows (7 of them, the last short), products of 40 positions
    assert sliced.slice_rows(memory) == 40
    slices: list[int] = []
    got = sliced.losses(states, targets, memory, after_slice=lambda: slices.append(1))
    assert len(slices) == 7  # each slice once, whatever the number of states
    assert memory // 2 // (40 * SLICE_LOGIT_BYTES) < 37  # the first state's positions take two products
    for loss, state, target in zip(got, states, targets, strict=True):
        assert loss.dtype == torch.float64 and loss.shape == target.shape
        assert torch.allclose(loss, _expected(head, softcap, state, target), rtol=1e-5, atol=1e-6)
    assert float(got[0][3]) == 0.0 and float(got[0][36]) == 0.0


def test_only_a_plain_unhooked_linear_is_sliced() -> None:
    class Scaled(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * 2

    assert SlicedHead.of(None, None) is None
    assert SlicedHead.of(Scaled(4, 8), None) is None
    hooked = nn.Linear(4, 8)
    hooked.register_forward_hook(lambda _m, _a, out: out * 2)
    assert SlicedHead.of(hooked, None) is None
    wrapped = nn.Linear(4, 8)
    wrapped.forward = lambda x: x  # type: ignore[method-assign]  # a wrapper replacing its forward
    assert SlicedHead.of(wrapped, None) is None
    assert SlicedHead.of(nn.Linear(4, 8), None) is not None


@pytest.mark.parametrize("model_type", ["llama", "gemma2"])
def test_the_streamed_evaluator_reads_a_linear_head_by_slice(tmp_path: Path, model_type: str) -> None:
    """A plain head (Gemma 2's with its soft cap) passes the check; a hooked one keeps the chunked path."""
    streamed = open_streamed(resolve_model(str(planted_checkpoint(tmp_path, model_type)), options=CPU))
    config = ValidateConfig(max_tokens=256)
    windows = evaluation_windows(streamed.loaded, bos_corpus(2), config)
    assert StreamedEvaluator(streamed, windows, None).sliced_head is not None
    head = streamed.loaded.model.get_output_embeddings()
    handle = head.register_forward_hook(lambda _m, _a, out: out)
    try:
        assert StreamedEvaluator(streamed, windows, None).sliced_head is None
    finally:
        handle.remove()


def test_a_probability_observer_sees_by_slice_what_it_sees_in_whole_rows() -> None:
    """The stopword meter, shown the predicted positions slice by slice, sums what whole rows give it."""
    torch.manual_seed(1)
    head = nn.Linear(16, 250)
    sliced = SlicedHead.of(head, None)
    assert sliced is not None
    state, target = torch.randn(20, 16) * 2, torch.randint(250, (20,))
    target[[0, 19]] = IGNORED
    ids = torch.tensor([3, 77, 120, 249])
    whole, by_slice = _Meter(ids, 250), _Meter(ids, 250)
    assert isinstance(by_slice, SliceObserver)
    predicted = target != IGNORED
    with torch.inference_mode():
        whole(0, head(state)[predicted].unsqueeze(0), target[predicted].unsqueeze(0))
    slices: list[int] = []
    (loss,) = sliced.losses(
        [state], [target], 2 * 40 * 16 * 4, after_slice=lambda: slices.append(1), observers=[[by_slice]]
    )
    assert len(slices) == 2 * 7  # the losses' read of the head, then the observer's
    assert by_slice.count == whole.count == 18
    assert by_slice.mass == pytest.approx(whole.mass, rel=1e-5)
    assert torch.allclose(by_slice.mean_probs, whole.mean_probs, rtol=1e-5, atol=1e-9)
    assert torch.allclose(loss, _expected(head, None, state, target), rtol=1e-5, atol=1e-6)
