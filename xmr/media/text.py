"""Text normalisation for captions and text queries.

Unicode NFKC (full-width letters, ligatures and compatibility forms become their plain
equivalents), control and format characters dropped, every run of whitespace collapsed to one
space, ends stripped. Empty text raises :class:`xmr.errors.InputError`; text longer than the cap is
cut (at a word boundary when one is near) and the caller is told through ``truncated``.

Example::

    from xmr.media.text import normalize_text
    normalize_text("  Ｂａｃｈ\\tchorale\\n").text  # 'Bach chorale'
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from xmr.errors import InputError

DEFAULT_MAX_CHARS = 1000
# Cut at the last space if it is at least this far into the kept text; otherwise cut mid-word.
_WORD_BOUNDARY_FRACTION = 0.8


@dataclass(frozen=True)
class NormalizedText:
    """Normalised text and whether it was cut to the length cap.

    Args:
        text: the normalised (and possibly truncated) text, never empty.
        truncated: ``True`` when the text was longer than the cap and was cut.
        original_chars: length of the normalised text before truncation.
    """

    text: str
    truncated: bool
    original_chars: int = 0


def normalize_text(text: str | bytes, *, max_chars: int = DEFAULT_MAX_CHARS) -> NormalizedText:
    """Normalise untrusted text (NFKC, no control characters, single spaces) and cap its length.

    Args:
        text: a ``str`` (or UTF-8 ``bytes``).
        max_chars: longest text returned, in characters (code points).

    Returns:
        :class:`NormalizedText` with the text and whether it was truncated.

    Raises:
        InputError: not text, not valid UTF-8, or nothing left after normalisation.

    Example::

        result = normalize_text(caption, max_chars=200)
        if result.truncated:
            print(f"caption cut from {result.original_chars} to 200 characters")
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("text is not valid UTF-8") from None
    if not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}")
    clean = unicodedata.normalize("NFKC", text)
    # Whitespace controls (tab, newline) become spaces via split(); other controls, format characters
    # (zero-width spaces, BOM, direction marks) and lone surrogates carry no meaning for retrieval.
    clean = "".join(
        ch if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co") else ""
        for ch in clean
    )
    clean = " ".join(clean.split())
    if not clean:
        raise InputError("text is empty; type a caption or a query")
    n = len(clean)
    if n <= max_chars:
        return NormalizedText(clean, False, n)
    cut = clean[:max_chars]
    if not clean[max_chars].isspace():
        space = cut.rfind(" ")
        if space >= _WORD_BOUNDARY_FRACTION * max_chars:
            cut = cut[:space]
    return NormalizedText(cut.rstrip(), True, n)
