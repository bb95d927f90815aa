"""Text normalisation: NFKC, whitespace, control characters, the length cap, and the bad inputs."""

from __future__ import annotations

import pytest

from xmr.errors import InputError
from xmr.media.text import NormalizedText, normalize_text


def test_nfkc_and_whitespace():
    out = normalize_text("  Ｂａｃｈ\tchorale\n\n in  G\u00a0major ﬁne ")
    assert out == NormalizedText("Bach chorale in G major fine", False, 28)


def test_control_and_format_characters_dropped():
    assert normalize_text("org\u200ban\x00 \ufeffpiece\x07").text == "organ piece"


def test_composed_accents_are_kept_as_one_character():
    assert normalize_text("Re\u0301quiem").text == "R\u00e9quiem"  # NFKC composes e + acute


def test_utf8_bytes_accepted():
    assert normalize_text("caf\u00e9".encode()).text == "caf\u00e9"


def test_text_at_the_cap_is_not_truncated():
    out = normalize_text("a" * 10, max_chars=10)
    assert out.text == "a" * 10 and not out.truncated


def test_truncation_is_reported_and_cuts_at_a_word():
    out = normalize_text("one two three four five six", max_chars=15)
    assert out.truncated and out.text == "one two three" and out.original_chars == 27
    assert len(out.text) <= 15


def test_truncation_mid_word_when_no_space_is_near():
    out = normalize_text("x" * 50, max_chars=20)
    assert out.truncated and out.text == "x" * 20


def test_default_cap_is_1000():
    out = normalize_text("word " * 400)
    assert out.truncated and len(out.text) <= 1000 and out.text.endswith("word")


@pytest.mark.parametrize("bad", ["", "   ", "\n\t", "\u200b\ufeff", "\x00\x01"])
def test_empty_text(bad):
    with pytest.raises(InputError) as ei:
        normalize_text(bad)
    msg = str(ei.value)
    assert "empty" in msg and "\n" not in msg


def test_not_text():
    with pytest.raises(InputError) as ei:
        normalize_text(42)
    assert str(ei.value) == "text must be a string, got int"


def test_invalid_utf8_bytes():
    with pytest.raises(InputError) as ei:
        normalize_text(b"\xff\xfe\xfa")
    assert str(ei.value) == "text is not valid UTF-8"
