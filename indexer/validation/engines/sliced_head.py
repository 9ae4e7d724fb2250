"""Next-token losses of many states from one read of a linear head, a slice of its vocabulary at a time.

A chunk of positions through the whole head reads the whole head (SmolLM2's tied embeddings: a fifth of its
weights) for a handful of rows, and holds every page of it resident. The layer-major suite ends with dozens
of final states, so it turns the loop around: for each slice of the vocabulary (a few MiB of the head's
rows), every state's logits over that slice, reduced at once to each position's log-sum-exp over the slice
and its target's logit. The head is read once for all the states, each product has all of a state's
positions as rows (compute-bound, not bound by reading the head again), and a mapped head's slice can leave
the resident set before the next is read. The loss of a position is the log-sum-exp of its slices'
log-sum-exps minus its target's logit: the cross-entropy's, to float rounding (not bit for bit: the sums
are grouped by slice). An observer that needs only probabilities (`SliceObserver`: the stopword meter) is
shown them slice by slice in a second read of the head, for the states it watches.

Only a head that is a plain `nn.Linear`, called as the class defines it (no hooks, no wrapper replacing its
forward), is read this way; anything else keeps the chunked path through the head as the model calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from indexer.validation.perplexity import IGNORED, SliceObserver

#: the logits of a slice are computed in float32, then reduced: their bytes, and the log-sum-exp's copy
SLICE_LOGIT_BYTES = 4 * 2


@dataclass(frozen=True)
class SlicedHead:
    """A plain linear head (weight `(vocab, hidden)`, optional bias and final soft cap), read by slice."""

    weight: torch.Tensor  # (vocab, hidden)
    bias: torch.Tensor | None  # (vocab,)
    softcap: float | None

    @staticmethod
    def of(head: nn.Module | None, softcap: float | None) -> SlicedHead | None:
        """The head, when it is a plain `nn.Linear` that nothing hooks or wraps; otherwise None."""
        if type(head) is not nn.Linear or "forward" in head.__dict__:
            return None
        if head._forward_hooks or head._forward_pre_hooks:
            return None
        return SlicedHead(head.weight, head.bias, softcap)

    def slice_rows(self, memory: int) -> int:
        """Vocabulary rows of one slice: half of `memory` for the slice of the head's weight."""
        row_bytes = self.weight.shape[1] * self.weight.element_size()
        return max(1, min(int(self.weight.shape[0]), memory // 2 // max(1, row_bytes)))

    def losses(
        self,
        states: Sequence[torch.Tensor],
        targets: Sequence[torch.Tensor],
        memory: int,
        after_slice: Callable[[], None] | None = None,
        observers: Sequence[Sequence[SliceObserver]] = (),
    ) -> list[torch.Tensor]:
        """Each position's next-token loss `(positions,)` in float64 (0 where the target is `IGNORED`) for
        every state `(positions, hidden)` at the head's input, with its targets `(positions,)`.

        `memory` bounds the working set: half for a slice of the head, half for its logits; `after_slice`
        runs once a slice is done with (to drop its pages). `observers[i]`, when given, are shown state
        i's probabilities at its predicted positions, slice by slice, in a second read of the head (a
        probability needs the position's whole log-sum-exp, known after the first).
        """
        vocab = int(self.weight.shape[0])
        rows = self.slice_rows(memory)
        starts = range(0, vocab, rows)
        chunk = max(1, memory // 2 // max(1, rows * SLICE_LOGIT_BYTES))  # positions of one product
        # per state: the log-sum-exp of each slice (slices, positions), and each position's target logit
        parts = [torch.empty((len(starts), s.shape[0]), dtype=torch.float32, device=s.device) for s in states]
        picked = [torch.zeros(s.shape[0], dtype=torch.float32, device=s.device) for s in states]
        with torch.inference_mode():
            for k, start in enumerate(starts):
                stop = min(vocab, start + rows)
                for state, target, part, pick in zip(states, targets, parts, picked, strict=True):
                    for first in range(0, state.shape[0], chunk):
                        last = min(state.shape[0], first + chunk)
                        logits = self._logits(state[first:last], start, stop)  # (chunk, slice)
                        part[k, first:last] = torch.logsumexp(logits, dim=-1)
                        wanted = target[first:last]  # (chunk,)
                        inside = ((wanted >= start) & (wanted < stop)).nonzero().squeeze(-1)  # (hits,)
                        if inside.numel():
                            pick[first + inside] = logits[inside, wanted[inside] - start]
                        del logits  # freed before the next product's logits exist
                if after_slice is not None:
                    after_slice()
            totals = [torch.logsumexp(part, dim=0) for part in parts]  # each (positions,)
            watched = [(i, seen) for i, seen in enumerate(observers) if seen]
            if watched:
                self._observe(watched, states, targets, totals, starts, rows, chunk, after_slice)
            out = []
            for total, pick, target in zip(totals, picked, targets, strict=True):
                loss = (total - pick).double()  # (positions,)
                out.append(loss.masked_fill(target == IGNORED, 0.0).cpu())
        return out

    def _logits(self, rows: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Float32 logits `(rows, stop - start)` of vocabulary ids start..stop, soft-capped as the model's."""
        bias = self.bias[start:stop] if self.bias is not None else None
        logits = F.linear(rows, self.weight[start:stop], bias)
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits.float()

    def _observe(
        self,
        watched: list[tuple[int, Sequence[SliceObserver]]],
        states: Sequence[torch.Tensor],
        targets: Sequence[torch.Tensor],
        totals: list[torch.Tensor],
        starts: range,
        rows: int,
        chunk: int,
        after_slice: Callable[[], None] | None,
    ) -> None:
        """The watched states' probabilities at their predicted positions, shown slice by slice."""
        # each watched state's predicted positions, gathered once: (n, hidden) and their log-sum-exps (n,)
        shown = []
        for i, seen in watched:
            predicted = (targets[i] != IGNORED).nonzero().squeeze(-1)  # (n,)
            for observer in seen:
                observer.observe_positions(int(predicted.numel()))
            shown.append((states[i][predicted], totals[i][predicted], seen))
        vocab = int(self.weight.shape[0])
        for start in starts:
            stop = min(vocab, start + rows)
            for state, total, seen in shown:
                for first in range(0, state.shape[0], chunk):
                    last = min(state.shape[0], first + chunk)
                    logits = self._logits(state[first:last], start, stop)  # (chunk, slice)
                    probs = logits.sub_(total[first:last, None]).exp_()  # in place: no second copy
                    for observer in seen:
                        observer.observe_slice(probs, start)
                    del logits, probs
            if after_slice is not None:
                after_slice()


__all__ = ["SLICE_LOGIT_BYTES", "SlicedHead"]
