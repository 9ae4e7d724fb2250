"""The perplexity evaluator's batches and loss for a streamed model (no whole-model pass).

The loss of a batch is computed from the last decoder layer's output, through the model's own final norm
and head (its forward with the layers stubbed); a plain linear head is read a slice of its vocabulary at
a time for many states at once (`indexer.validation.engines.sliced_head`). The layer-major suite
(`indexer.validation.engines.layered`) drives the layers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from indexer.model.streaming import (
    CapturedCalls,
    StreamedModel,
    capture_layer_calls,
    forward_from_final,
    head_logits,
)
from indexer.validation.corpus import TokenWindows
from indexer.validation.engines.sliced_head import SlicedHead
from indexer.validation.perplexity import (
    HEAD_CHECK_TOKENS,
    IGNORED,
    LOGIT_BYTES,
    BatchObserver,
    SliceObserver,
    WindowLoss,
    logits_match,
    next_token_targets,
    vocab_size,
)

#: positions of the smallest chunk of logits the loss is computed on
LOGITS_MIN_POSITIONS = 16


def _same(a: Any, b: Any) -> bool:
    """Whether two captured call arguments are the same values (tensors compared element by element)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and a.device == b.device
            and bool(torch.equal(a, b))
        )
    if isinstance(a, tuple | list):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    try:
        return bool(a is b or a == b)
    except Exception:  # an object that cannot compare: treat it as another value
        return False


class StreamedEvaluator(WindowLoss):
    """The perplexity evaluator's batches and loss for a streamed model: the loss of a batch is computed
    from the last decoder layer's output, through the model's own final norm and head (layers stubbed).

    It has no whole-model pass (`PerplexityEvaluator.run`): the layer-major suite drives the layers."""

    def __init__(self, streamed: StreamedModel, windows: TokenWindows, batch_size: int | None) -> None:
        self.streamed = streamed
        #: the head check's tokens `(1, tokens)` and head input `(1, tokens, hidden)`, until the sliced
        #: head's check has read them
        self._checked_head_input: tuple[torch.Tensor, torch.Tensor] | None = None
        super().__init__(streamed.loaded, windows, batch_size)
        self.captured: list[CapturedCalls] = []
        # the logits of a chunk are working memory next to the resident part, which is small here: at most
        # a fortieth of the weights, so a head that is mapped, resident again, still fits (the batches are
        # the in-memory engine's, so its figures are too)
        vocab = vocab_size(self.model)
        budget = max(LOGITS_MIN_POSITIONS * vocab * LOGIT_BYTES, streamed.weight_bytes // 40)
        self.chunk_tokens = min(self.chunk_tokens, max(1, budget // max(1, vocab * LOGIT_BYTES)))
        #: the working memory of the sliced head (a slice of the head's rows and its logits)
        self.logits_budget = budget
        #: the head read a slice of its vocabulary at a time for every final state at once, when it is a
        #: plain linear layer whose sliced loss is the chunked one's on the check's tokens
        self.sliced_head = self._checked_sliced_head() if self.chunked_logits else None
        # the head checks touched every page of a mapped head (SmolLM2's tied embeddings: a fifth of the
        # weights); nothing reads it whole again until the heads, which read it a slice at a time
        streamed.checkpoint.drop_mapped_pages()

    def capture(self) -> list[CapturedCalls]:
        """Every batch's embeddings and layer calls, from the model's own forward (no layer is read).

        A batch whose calls equal an earlier batch's (the usual case: same shapes, same positions) shares
        that batch's arguments, so per-layer masks are held once.
        """
        captured: list[CapturedCalls] = []
        for batch in self.batches:
            calls = capture_layer_calls(self.streamed, batch.to(self.device))
            shared = tuple(
                next((earlier.calls[i] for earlier in captured if _same(earlier.calls[i], call)), call)
                for i, call in enumerate(calls.calls)
            )
            captured.append(dataclasses.replace(calls, calls=shared))
        self.captured = captured
        return captured

    def final_nll(self, index: int, final: torch.Tensor, observer: BatchObserver | None) -> torch.Tensor:
        """Each window's summed next-token loss `(batch,)` of batch `index` from its last layer's output."""
        ids = self.batches[index].to(self.device)  # (batch, window)
        with torch.inference_mode():
            if self.chunked_logits:
                return self._chunked_nll(index, self.head_input(index, final), ids, observer)
            logits = head_logits(self.streamed, self.captured[index], ids, final)  # (batch, window, vocab)
            return self._logits_nll(index, logits, ids, observer)

    def head_input(self, index: int, final: torch.Tensor) -> torch.Tensor:
        """The head's input `(batch, window, hidden)` for batch `index` from its last layer's output: the
        model's own final norm (its forward with the layers stubbed, the head recording its input)."""
        ids = self.batches[index].to(self.device)  # (batch, window)
        with torch.inference_mode(), self._capturing_head_input() as head_input:
            forward_from_final(self.streamed, self.captured[index], ids, final)
        return head_input[-1]

    def sliced_losses(
        self,
        states: Sequence[torch.Tensor],
        indices: Sequence[int],
        observers: Sequence[Sequence[SliceObserver]] = (),
    ) -> list[torch.Tensor]:
        """Each window's summed next-token loss `(batch,)` for every head input `states[i]` of batch
        `indices[i]` (shown to `observers[i]`), from the sliced head (a mapped head's slices leave the
        resident set)."""
        assert self.sliced_head is not None
        targets = [next_token_targets(self.batches[i]).reshape(-1).to(self.device) for i in indices]
        rows = [state.reshape(-1, state.shape[-1]) for state in states]  # each (batch * window, hidden)
        losses = self.sliced_head.losses(
            rows,
            targets,
            self.logits_budget,
            after_slice=self.streamed.checkpoint.drop_mapped_pages,
            observers=observers,
        )
        return [loss.view(self.batches[i].shape).sum(dim=1) for loss, i in zip(losses, indices, strict=True)]

    def _checked_sliced_head(self) -> SlicedHead | None:
        """The sliced head, when its losses on the check's tokens are the chunked path's (within 1e-5)."""
        sliced = SlicedHead.of(self._head, self._softcap)
        checked, self._checked_head_input = self._checked_head_input, None
        if sliced is None or checked is None:
            return None
        ids, head_input = checked  # the head check's tokens and head input
        rows = head_input.reshape(-1, head_input.shape[-1])  # (tokens, hidden)
        targets = next_token_targets(ids).reshape(-1)  # (tokens,)
        with torch.inference_mode():
            logits = self._head_logits(rows).float()  # (tokens, vocab)
            expected = F.cross_entropy(logits, targets, ignore_index=IGNORED, reduction="none").double()
        (got,) = sliced.losses([rows], [targets], self.logits_budget)
        return sliced if torch.allclose(got, expected.cpu(), rtol=1e-5, atol=1e-5) else None

    def _head_reproduces_logits(self) -> bool:
        """Whether the head's input, through the head (and soft cap), gives the model's own logits: checked
        on the embeddings of a few tokens standing in for the last layer's output (nothing is read)."""
        ids = self.windows.input_ids[:1, :HEAD_CHECK_TOKENS].to(self.device)  # (1, tokens)
        captured = capture_layer_calls(self.streamed, ids)
        final = captured.hidden  # (1, tokens, hidden): what follows the layers is what is checked
        with torch.inference_mode():
            expected = head_logits(self.streamed, captured, ids, final).float()  # (1, tokens, vocab)
            with self._capturing_head_input() as head_input:
                forward_from_final(self.streamed, captured, ids, final)
            if len(head_input) != 1:
                return False
            got = self._head_logits(head_input[0]).float()
        # kept for the sliced head's check, which runs on the same tokens
        self._checked_head_input = (ids, head_input[0])
        return logits_match(got, expected)


__all__ = ["StreamedEvaluator"]
