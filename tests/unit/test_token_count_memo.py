"""Attacks on the token-count memo: its character bound, several encoders, threads."""

from __future__ import annotations

import threading

import pytest

from langchain_multigateway import tokens


@pytest.fixture
def small_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "MEMO_MAX_CHARS", 20_000)
    monkeypatch.setattr(tokens, "_memo", {})
    monkeypatch.setattr(tokens, "_memo_chars", [0])


def _held() -> int:
    with tokens._memo_lock:  # the books as a writer leaves them
        return sum(len(text) for _, text in tokens._memo)


def test_a_text_longer_than_the_whole_memo_is_counted_but_not_kept(small_memo: None) -> None:
    huge = "word " * 10_000  # 50,000 characters, more than the memo may hold
    assert tokens.count_text_tokens(huge) > 0
    assert _held() <= tokens.MEMO_MAX_CHARS
    assert tokens._memo_chars[0] == _held()


def test_a_count_is_remembered_per_encoder_not_per_encoding_name(
    small_memo: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An encoder replaced for the same encoding name (a fallback, then the real file) is never
    answered from the other one's counts."""
    text = "counting " * 200
    monkeypatch.setattr(tokens, "_encoders", {"o200k_base": lambda t: 1})
    assert tokens.count_text_tokens(text, "gpt-4o") == 1
    monkeypatch.setattr(tokens, "_encoders", {"o200k_base": lambda t: 2})
    assert tokens.count_text_tokens(text, "gpt-4o") == 2


def test_threads_counting_at_once_keep_the_bound_and_the_books(small_memo: None) -> None:
    texts = [f"{n} " + "x" * 1500 for n in range(60)]  # 60 distinct texts, ~90,000 characters in all
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for _ in range(20):
                for text in texts[offset::3]:
                    assert tokens.count_text_tokens(text) > 0
                    held = _held()
                    assert held <= tokens.MEMO_MAX_CHARS, held
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n % 3,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    assert tokens._memo_chars[0] == _held()
