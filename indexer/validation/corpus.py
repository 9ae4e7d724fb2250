"""Evaluation corpora and their identity: a text file, WikiText-2 (via `datasets`), or the built-in prose.

Every perplexity figure carries the identity of its windows (`contracts.validation.CorpusWindows`: name,
sha256 of the text, tokens used, window length, ...) so that two numbers are never compared blindly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from contracts.validation import CorpusWindows
from indexer.errors import InvalidInputError

BUILTIN = "builtin"
WIKITEXT2 = "wikitext2"
#: WikiText-2 where the `datasets` library can load it, the built-in corpus otherwise (the default)
AUTO = "auto"
#: the names `load_corpus` understands besides a file path
CORPUS_NAMES = (AUTO, BUILTIN, WIKITEXT2)


@dataclass(frozen=True)
class Corpus:
    """A named evaluation text."""

    name: str  # "builtin:pydoc_data.topics", "wikitext2:test", or the file's name
    text: str = ""
    sha256: str = ""

    @classmethod
    def from_text(cls, name: str, text: str) -> Corpus:
        """A corpus with its sha256 computed from `text`; empty text is refused."""
        if not text.strip():
            raise InvalidInputError(f"corpus {name!r} is empty")
        return cls(name, text, hashlib.sha256(text.encode("utf-8")).hexdigest())


@dataclass(frozen=True)
class TokenWindows:
    """Non-overlapping token windows of a corpus, ready for evaluation."""

    input_ids: torch.Tensor  # (windows, window) int64
    identity: CorpusWindows


def builtin_corpus() -> Corpus:
    """The standard library's `pydoc_data.topics` prose: present on every Python installation."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[key].strip() for key in sorted(topics))
    return Corpus.from_text(f"{BUILTIN}:pydoc_data.topics", text)


def wikitext2_corpus() -> Corpus:
    """WikiText-2 (raw) test split through the `datasets` library, when installed and reachable."""
    try:
        import datasets
    except ImportError:
        raise InvalidInputError(
            "the wikitext2 corpus needs the `datasets` package, which is not installed; "
            "pass the path of a local copy (e.g. wiki.test.raw) or use --corpus builtin"
        ) from None
    try:
        data: Any = datasets.load_dataset("wikitext", "wikitext-2-raw-v1", split="test")
    except Exception as exc:  # datasets raises many unrelated types for "not reachable"
        raise InvalidInputError(
            f"could not load wikitext2 through `datasets` ({type(exc).__name__}: {exc}); "
            "pass the path of a local copy (e.g. wiki.test.raw) or use --corpus builtin"
        ) from None
    # the join the reference perplexity scripts use
    return Corpus.from_text(f"{WIKITEXT2}:test", "\n\n".join(data["text"]))


def file_corpus(path: Path) -> Corpus:
    """A UTF-8 text file, named by its file name (never the machine's path)."""
    if not path.is_file():
        raise InvalidInputError(f"corpus file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(f"corpus file {path.name} is not UTF-8 text") from None
    return Corpus.from_text(path.name, text)


def default_corpus() -> Corpus:
    """WikiText-2 (the corpus published ratios are measured on) where `datasets` can load it, offline
    included when it is cached; the built-in corpus otherwise. Verdicts name the corpus they used."""
    try:
        return wikitext2_corpus()
    except InvalidInputError:
        return builtin_corpus()


def load_corpus(spec: str) -> Corpus:
    """`auto` (WikiText-2, or the built-in fallback), `builtin`, `wikitext2`, or the path of a text file."""
    if not spec or not spec.strip():
        raise InvalidInputError("empty corpus name")
    if spec == AUTO:
        return default_corpus()
    if spec == BUILTIN:
        return builtin_corpus()
    if spec == WIKITEXT2:
        return wikitext2_corpus()
    path = Path(spec).expanduser()
    if not path.exists():
        raise InvalidInputError(f"unknown corpus {spec!r}: not {' or '.join(CORPUS_NAMES)}, and no such file")
    return file_corpus(path)


def tokenizer_label(tokenizer: Any) -> str:
    """A short description of a tokenizer that identifies its token counts."""
    vocab = getattr(tokenizer, "vocab_size", None)
    return f"{type(tokenizer).__name__}(vocab={vocab})"


def token_windows(corpus: Corpus, tokenizer: Any, window: int, max_tokens: int | None = None) -> TokenWindows:
    """Tokenize the corpus (only as much as the budget needs) into non-overlapping windows.

    The text is tokenized as one stream (special tokens as the tokenizer adds them, i.e. a BOS at the very
    start for Llama-style tokenizers), then cut into `window`-token windows; the last partial window is
    dropped. `max_tokens` caps the tokens used (a whole number of windows).
    """
    if window < 2:
        raise InvalidInputError(f"the window must be at least 2 tokens, got {window}")
    if max_tokens is not None:
        if max_tokens < window:
            raise InvalidInputError(
                f"the token budget ({max_tokens}) is smaller than one {window}-token window; "
                "raise --max-tokens or lower --window"
            )
        wanted_windows: int | None = max_tokens // window
    else:
        wanted_windows = None
    ids = _tokenize_prefix(
        corpus.text, tokenizer, None if wanted_windows is None else wanted_windows * window
    )
    available = len(ids) // window
    if available < 1:
        raise InvalidInputError(
            f"corpus {corpus.name!r} is too short: {len(ids)} tokens, fewer than one {window}-token window"
        )
    count = available if wanted_windows is None else min(available, wanted_windows)
    input_ids = torch.tensor(ids[: count * window], dtype=torch.long).view(count, window)  # (windows, window)
    identity = CorpusWindows(
        name=corpus.name,
        sha256=corpus.sha256,
        characters=len(corpus.text),
        tokens=count * window,
        window=window,
        windows=count,
        tokenizer=tokenizer_label(tokenizer),
    )
    return TokenWindows(input_ids, identity)


def _tokenize_prefix(text: str, tokenizer: Any, needed: int | None) -> list[int]:
    """Token ids of `text`, or of a prefix long enough to give `needed` tokens that do not touch the cut."""
    if needed is None:
        return _encode(tokenizer, text)
    characters = max(4096, needed * 8)
    while True:
        if characters >= len(text):
            return _encode(tokenizer, text)
        ids = _encode(tokenizer, text[:characters])
        # the last tokens may straddle the cut; keep a margin so they are never used
        if len(ids) > needed + 8:
            return ids[:needed]
        characters *= 2


def _encode(tokenizer: Any, text: str) -> list[int]:
    try:
        # verbose=False: the corpus is meant to be longer than the model's context; no warning
        encoded = tokenizer(text, verbose=False)["input_ids"]
    except TypeError:
        encoded = tokenizer(text)["input_ids"]
    return [int(i) for i in encoded]
