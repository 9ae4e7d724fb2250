"""`stopwords`: next-token probability mass on a fixed stopword list before and after joint zeroing.

It measures no pass of its own: it observes the baseline's and the joint zeroing's logits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from contracts.validation import FigureKey
from indexer.validation.experiments.base import ExperimentContext, Measures, Phase, Variant
from indexer.validation.perplexity import BatchObserver, vocab_size
from indexer.validation.results import StopwordShift, TokenShift

#: function words (and the two commonest punctuation marks) whose probability the super weight suppresses
STOPWORDS = (
    "the", "a", "an", "and", "or", "but", "of", "to", "in", "on", "at", "for", "with", "by", "from", "as",
    "is", "was", "are", "were", "be", "been", "it", "its", "that", "this", "which", "who", "he", "she",
    "they", "we", "i", "you", "his", "her", "their", "not", "no", "so", "if", "then", "than", "there",
    "have", "has", "had", "do", "will", "would", "can", "could", ".", ",",
)  # fmt: skip


#: positions whose probabilities the meter holds at once
METER_ROWS = 4


class _Meter:
    """Stopword probability mass and per-token mean probabilities of one pass."""

    def __init__(self, token_ids: torch.Tensor, vocab: int) -> None:
        self.token_ids = token_ids
        self.vocab = vocab
        self.sum_mass = 0.0
        self.sum_probs = torch.zeros(vocab, dtype=torch.float64)
        self.count = 0

    def __call__(self, _index: int, logits: torch.Tensor, _targets: torch.Tensor) -> None:
        """Add one batch (or chunk) of logits `(batch, seq, vocab)`."""
        rows = logits.reshape(-1, logits.shape[-1])  # (batch * seq, vocab)
        ids = self.token_ids.to(rows.device)
        # a few rows' probabilities at a time: the observer holds no second copy of the caller's logits
        for start in range(0, rows.shape[0], METER_ROWS):
            probs = torch.softmax(rows[start : start + METER_ROWS].float(), dim=-1)  # (rows, vocab)
            self.sum_mass += float(probs.index_select(-1, ids).sum())
            self.sum_probs += probs.sum(dim=0).double().cpu()[: self.vocab]
        self.count += rows.shape[0]

    def observe_positions(self, count: int) -> None:
        """Count positions whose probabilities come by slice (`observe_slice`)."""
        self.count += count

    def observe_slice(self, probs: torch.Tensor, start: int) -> None:
        """Add probabilities `(positions, slice)` of the vocabulary ids from `start`."""
        stop = start + probs.shape[-1]
        ids = self.token_ids.to(probs.device)
        inside = ids[(ids >= start) & (ids < stop)] - start
        self.sum_mass += float(probs.index_select(-1, inside).sum())
        self.sum_probs[start:stop] += probs.sum(dim=0).double().cpu()[: max(0, self.vocab - start)]

    @property
    def mass(self) -> float:
        """Mean summed stopword probability over the predicted positions seen."""
        return self.sum_mass / self.count

    @property
    def mean_probs(self) -> torch.Tensor:
        """Mean probability of every token over the predicted positions seen."""
        return self.sum_probs / self.count


def stopword_ids(tokenizer: Any) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Stopwords that are single tokens (with or without a leading space), and those token ids."""
    words: list[str] = []
    ids: set[int] = set()
    for word in STOPWORDS:
        found = False
        for form in (word, " " + word, word.capitalize(), " " + word.capitalize()):
            encoded = tokenizer(form, add_special_tokens=False)["input_ids"]
            if len(encoded) == 1:
                ids.add(int(encoded[0]))
                found = True
        if found:
            words.append(word)
    return tuple(words), tuple(sorted(ids))


def _token_text(tokenizer: Any, token_id: int) -> str:
    try:
        return str(tokenizer.decode([token_id]))
    except Exception:  # a tokenizer that cannot decode one id still has a name for it
        return str(token_id)


class _StopwordObservation:
    def __init__(self, context: ExperimentContext, words: tuple[str, ...], ids: tuple[int, ...]) -> None:
        self.context = context
        self.words = words
        token_ids = torch.tensor(sorted(set(ids)), dtype=torch.long)
        vocab = vocab_size(context.model)
        self.before = _Meter(token_ids, vocab)
        self.after = _Meter(token_ids, vocab)
        self.observers: Mapping[FigureKey, BatchObserver] = {
            FigureKey.baseline(): self.before,
            FigureKey.joint(): self.after,
        }

    def summary(self) -> StopwordShift | None:
        """The shift, when both passes ran."""
        if not self.before.count or not self.after.count:
            return None
        before, after = self.before.mean_probs, self.after.mean_probs
        difference = after - before
        k = min(self.context.config.stopword_top_k, difference.numel())
        tokenizer = self.context.loaded.tokenizer

        def shifts(indices: list[int]) -> tuple[TokenShift, ...]:
            return tuple(
                TokenShift(
                    token_id=i,
                    token=_token_text(tokenizer, i),
                    before=float(before[i]),
                    after=float(after[i]),
                )
                for i in indices
            )

        return StopwordShift(
            stopwords=self.words,
            token_ids=tuple(int(i) for i in self.before.token_ids.tolist()),
            mass_before=self.before.mass,
            mass_after=self.after.mass,
            gains=shifts(difference.topk(k).indices.tolist()),
            losses=shifts((-difference).topk(k).indices.tolist()),
        )


class Stopwords(Measures):
    """Probability mass moved onto stopwords by the joint zeroing."""

    name = "stopwords"
    phase: Phase = "pruning"
    requires = ("joint",)

    def variants(self, context: ExperimentContext) -> Sequence[Variant]:
        """None: it observes the baseline and the joint zeroing."""
        return ()

    def observe(self, context: ExperimentContext) -> _StopwordObservation | None:
        """Observers on the baseline and joint passes, when some stopword is a single token."""
        if not context.super_weights:
            return None
        words, ids = stopword_ids(context.loaded.tokenizer)
        return _StopwordObservation(context, words, ids) if ids else None
