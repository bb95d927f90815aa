"""The two caption styles of a corpus item.

*full* may name the composer, the title and the collection; *content_only* says only what can be
heard or seen (form/genre, key and mode, meter, tempo, instrument, voices, register), so that a
model cannot score caption retrieval by matching names. As a guard, any clause of the
content-only caption that happens to contain a name of the item (a tune titled "Reel") is dropped.
"""

from __future__ import annotations

import re

from xmr.data.corpus.excerpts import number_word

MIN_NAME_CHARS = 4  # names shorter than this ("Air") are too generic to check for


def _article(word: str) -> str:
    return "An" if word[:1].lower() in "aeiou" else "A"


def contains_name(text: str, name: str) -> bool:
    """Whether ``name`` (at least MIN_NAME_CHARS long) occurs in ``text`` as whole words, any case."""
    name = " ".join(str(name).split())
    if len(name) < MIN_NAME_CHARS:
        return False
    return re.search(rf"(?<!\w){re.escape(name.lower())}(?!\w)", text.lower()) is not None


def _voices(n: int) -> str:
    return "one voice" if n == 1 else f"{number_word(n)} voices"


def full_caption(meta: dict) -> str:
    """Caption that may name the composer, title and collection of the item."""
    genre = meta["genre"]
    who = f" by {meta['composer']}" if meta.get("composer") else ""
    return (
        f"{_article(genre)} {genre}{who} from {meta['collection_name']}, \u201c{meta['title']}\u201d, "
        f"in {meta['key']}, {meta['meter'] or 'free'} time, {meta['tempo_term']}, "
        f"played on {meta['instrument']}; {_voices(meta['voices'])}."
    )


def content_caption(meta: dict, names: list[str]) -> str:
    """Caption of what can be heard or seen only; clauses that contain one of ``names`` are dropped."""
    genre = meta["genre"]
    meter = f"{meta['meter']} time ({meta['meter_kind']})" if meta["meter"] else "free meter"
    clauses = [
        f"{_article(genre)} {genre} in {meta['key']}",
        meter,
        f"{meta['tempo_term']} tempo ({meta['beat_bpm']} beats per minute)",
        f"played on {meta['instrument']}",
        f"{_voices(meta['voices'])} in a {meta['register']} register",
    ]
    kept = [c for c in clauses if not any(contains_name(c, n) for n in names if n)]
    if not kept or kept[0] is not clauses[0]:
        kept.insert(0, f"Music in {meta['key']}")
    text = ", ".join(kept) + "."
    return text[0].upper() + text[1:]
