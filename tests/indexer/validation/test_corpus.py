"""Corpora: sources, identity, windows and the clear errors for bad input."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

from indexer.errors import InvalidInputError
from indexer.validation.corpus import Corpus, builtin_corpus, file_corpus, load_corpus, token_windows
from tests.tiny import tiny_tokenizer


def test_builtin_corpus_is_stable_prose() -> None:
    first, second = builtin_corpus(), builtin_corpus()
    assert first.name == "builtin:pydoc_data.topics"
    assert first.sha256 == second.sha256 == hashlib.sha256(first.text.encode()).hexdigest()
    assert len(first.text) > 100_000
    assert load_corpus("builtin") == first


def test_file_corpus_is_named_by_its_file_name(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello world " * 100, encoding="utf-8")
    corpus = load_corpus(str(path))
    assert corpus.name == "notes.txt"
    assert corpus == file_corpus(path)


@pytest.mark.parametrize("text", ["", "  \n\t "])
def test_empty_corpus_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.txt"
    path.write_text(text)
    with pytest.raises(InvalidInputError, match="empty"):
        load_corpus(str(path))


def test_unknown_corpus_and_binary_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown corpus"):
        load_corpus("wikitext103")
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(InvalidInputError, match="UTF-8"):
        load_corpus(str(binary))


@pytest.mark.skipif(importlib.util.find_spec("datasets") is not None, reason="datasets is installed")
def test_wikitext2_without_datasets_says_what_to_do() -> None:
    with pytest.raises(InvalidInputError, match="datasets"):
        load_corpus("wikitext2")


def test_windows_are_non_overlapping_and_identified() -> None:
    tokenizer = tiny_tokenizer()
    corpus = Corpus.from_text("abc", "abcdefghij" * 50)  # 500 characters, 501 tokens with BOS
    windows = token_windows(corpus, tokenizer, window=100, max_tokens=350)
    assert windows.input_ids.shape == (3, 100)
    ids = tokenizer(corpus.text)["input_ids"]
    assert windows.input_ids.reshape(-1).tolist() == ids[:300]
    identity = windows.identity
    assert (identity.name, identity.sha256, identity.tokens, identity.window, identity.windows) == (
        "abc",
        corpus.sha256,
        300,
        100,
        3,
    )
    assert token_windows(corpus, tokenizer, window=100).identity.windows == 5  # no budget: all full windows


def test_budget_prefix_tokenization_matches_the_whole_text() -> None:
    tokenizer = tiny_tokenizer()
    corpus = builtin_corpus()
    windows = token_windows(corpus, tokenizer, window=64, max_tokens=640)
    assert windows.input_ids.reshape(-1).tolist() == tokenizer(corpus.text[:2000])["input_ids"][:640]


def test_too_short_corpus_and_small_budget_are_refused() -> None:
    tokenizer = tiny_tokenizer()
    with pytest.raises(InvalidInputError, match="too short"):
        token_windows(Corpus.from_text("short", "tiny text"), tokenizer, window=128)
    with pytest.raises(InvalidInputError, match="smaller than one 128-token window"):
        token_windows(builtin_corpus(), tokenizer, window=128, max_tokens=100)
