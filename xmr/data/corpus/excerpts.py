"""Parse a piece once, cut it into excerpts of a few bars, and describe what each excerpt holds.

An excerpt is a run of consecutive bars that lasts 8-12 s at the tempo drawn for it. Tempo and
instrument are drawn from a hash of the item id, so an item always sounds the same wherever it
is rendered. Everything a caption says about content (key, mode, meter, voices, register) is
computed from the excerpt's own notes.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

from xmr.data.corpus.catalog import INSTRUMENTS, Collection, Piece, corpus_root, slug, stable_hash

MIN_SECONDS = 8.0
MAX_SECONDS = 12.0
TAIL_SECONDS = 0.5  # silence kept after the last bar so that the final notes can ring out

# Slow tune types of the fiddle-tune books get a slower tempo range than the dances.
_SLOW_RHYTHMS = ("air", "waltz", "slow", "march", "lament")


class ExcerptError(Exception):
    """A piece or excerpt that cannot be used; the message is the reason counted in the summary."""


@functools.lru_cache(maxsize=1)
def load_piece(source: str, number: int | None = None):
    """Parse corpus file ``source`` (tune ``number`` of a multi-tune ABC file) into a Score.

    The last parse is kept per process: an item's image and audio rendered one after the other
    share it, and a long-running app holds one parsed score, not several (a big one is tens of MB).
    Callers must not mutate the result (:func:`make_excerpt` copies).
    """
    from music21 import converter, stream

    path = corpus_root() / source
    if not path.is_file():
        raise ExcerptError(f"missing source file {source}")
    # forceSource: never read or write music21's pickle cache (it lives outside the project).
    parsed = converter.parse(str(path), number=number, forceSource=True) if number is not None else (
        converter.parse(str(path), forceSource=True)
    )
    if isinstance(parsed, stream.Opus):
        scores = list(parsed.scores)
        if not scores:
            raise ExcerptError("empty opus")
        parsed = scores[0]
    if not isinstance(parsed, stream.Score):
        score = stream.Score()
        score.insert(0, parsed)
        parsed = score
    if not parsed.parts:
        raise ExcerptError("no parts")
    return parsed


@dataclass(frozen=True)
class Window:
    """Bars ``start``..``end`` (0-based bar indices, inclusive) played at ``bpm`` quarter notes/min."""

    start: int
    end: int
    bpm: int
    quarter_length: float

    @property
    def music_seconds(self) -> float:
        return self.quarter_length * 60.0 / self.bpm

    @property
    def seconds(self) -> float:
        """Length of the rendered audio: the bars plus a short tail."""
        return round(self.music_seconds + TAIL_SECONDS, 3)


def measure_table(score) -> list[tuple[int, float]]:
    """(bar index, length in quarter notes) of the score's bars, from its first part.

    Bars are addressed by index, not by printed number: sources number split bars "16", "16a".
    """
    from music21 import stream

    table = [(i, float(m.duration.quarterLength))
             for i, m in enumerate(score.parts[0].getElementsByClass(stream.Measure))]
    if len(table) < 2:
        raise ExcerptError("fewer than 2 bars")
    return table


def bpm_range(collection: Collection, piece: Piece) -> tuple[int, int]:
    if piece.rhythm and any(word in piece.rhythm for word in _SLOW_RHYTHMS):
        return (72, 112)
    return collection.bpm


def item_id(piece: Piece, start: int) -> str:
    """Stable item id: the piece id as a slug plus the first bar's index (``bach-bwv66-6-b005``)."""
    return f"{slug(piece.piece_id)}-b{start:03d}"


def draw_bpm(piece: Piece, collection: Collection, start: int) -> int:
    lo, hi = bpm_range(collection, piece)
    return lo + stable_hash("bpm", item_id(piece, start)) % (hi - lo + 1)


def draw_instrument(collection: Collection, ident: str) -> tuple[str, int]:
    """(instrument name, GM program) for item ``ident`` among the collection's choices."""
    name = collection.programs[stable_hash("program", ident) % len(collection.programs)]
    return name, INSTRUMENTS[name]


def choose_windows(piece: Piece, collection: Collection, table: list[tuple[int, float]],
                   max_excerpts: int) -> list[Window]:
    """Non-overlapping runs of bars lasting MIN..MAX seconds; at most ``max_excerpts``, evenly spread.

    Each run starts where the previous ended; its tempo is drawn from the id of its first bar, and
    bars are added until it lasts at least MIN_SECONDS. A run that would pass MAX_SECONDS (very long
    bars) is dropped and the search moves on by one bar.
    """
    windows: list[Window] = []
    i = 0
    while i < len(table):
        start = table[i][0]
        bpm = draw_bpm(piece, collection, start)
        ql, j = 0.0, i
        while j < len(table) and ql * 60.0 / bpm < MIN_SECONDS:
            ql += table[j][1]
            j += 1
        seconds = ql * 60.0 / bpm
        if seconds < MIN_SECONDS:
            break  # the piece ends before the run is long enough
        if seconds > MAX_SECONDS:
            i += 1
            continue
        windows.append(Window(start, table[j - 1][0], bpm, ql))
        i = j
    if len(windows) > max_excerpts:
        n = len(windows)
        picks = sorted({round(k * (n - 1) / max(max_excerpts - 1, 1)) for k in range(max_excerpts)})
        windows = [windows[k] for k in picks]
    return windows


def make_excerpt(score, start: int, end: int):
    """A deep copy of bars ``start..end`` (0-based indices, inclusive) without lyrics, text or tempo.

    Lyrics and text would put words (sometimes the title) into the engraved image; the source's
    tempo marks are replaced by the tempo drawn for the item.
    """
    from music21 import clef, expressions, instrument, key, meter, stream, tempo

    excerpt = copy.deepcopy(score.measures(start, end + 1, indicesNotNumbers=True))
    excerpt.metadata = None
    drop, seen = [], set()
    for container in [excerpt, *excerpt.recurse(streamsOnly=True)]:
        for el in container.elements:
            if isinstance(el, tempo.TempoIndication | expressions.TextExpression | expressions.RehearsalMark
                          | instrument.Instrument):
                drop.append((container, el))
            elif isinstance(el, meter.TimeSignature | key.KeySignature | clef.Clef):
                # The ABC parser can put one context object into two bars; MIDI export then fails.
                if id(el) in seen:
                    drop.append((container, el))
                seen.add(id(el))
            elif getattr(el, "lyrics", None):
                el.lyrics = []
    for container, el in drop:
        container.remove(el)
    parts = [p for p in excerpt.parts if p.recurse().notes]
    if not parts:
        raise ExcerptError("no notes in excerpt")
    for p in excerpt.parts:
        if not p.recurse().notes:
            excerpt.remove(p)
    if any(n.isUnpitched if hasattr(n, "isUnpitched") else False for n in excerpt.recurse().notes):
        raise ExcerptError("unpitched (percussion) notes")
    if not isinstance(excerpt, stream.Score):
        raise ExcerptError("excerpt is not a score")
    return excerpt


def bar_times(excerpt, *, bpm: int) -> tuple[list[float], list[float]]:
    """(onsets, ends) in seconds of the excerpt's bars in its audio, at ``bpm`` quarter notes/min.

    The bars of the first part at their offsets in the stream, which are the offsets its MIDI
    export (:func:`set_performance`) uses; a bar ends where the next begins, the last one after
    its own length. Rounded to microseconds.
    """
    from music21 import stream

    part = excerpt.parts[0]
    measures = list(part.getElementsByClass(stream.Measure))
    if not measures:
        raise ExcerptError("no bars in excerpt")
    sec = 60.0 / bpm
    offsets = [float(m.getOffsetBySite(part)) for m in measures]
    onsets = [round(o * sec, 6) for o in offsets]
    last_end = offsets[-1] + float(measures[-1].duration.quarterLength)
    ends = [*onsets[1:], round(last_end * sec, 6)]
    if any(b <= a for a, b in zip(onsets, ends, strict=True)):
        raise ExcerptError("bars of zero length")
    return onsets, ends


def set_performance(excerpt, *, bpm: int, program: int):
    """Copy of ``excerpt`` with one tempo mark and every part on GM ``program`` (for MIDI only)."""
    from music21 import bar, instrument, repeat, spanner, stream, tempo

    perf = copy.deepcopy(excerpt)
    # Grace notes have no duration: music21 writes their note-off before their note-on, and the
    # stuck note keeps FluidSynth's fast render running forever.
    graces = [n for n in perf.recurse().notes if n.duration.quarterLength == 0]
    for n in graces:
        if n.activeSite is not None:
            n.activeSite.remove(n)
    # Repeats are played once: the audio must hold exactly the bars the image shows (and music21's
    # repeat expansion fails on repeats cut open by the excerpt).
    for m in perf.recurse().getElementsByClass(stream.Measure):
        if isinstance(m.leftBarline, bar.Repeat):
            m.leftBarline = None
        if isinstance(m.rightBarline, bar.Repeat):
            m.rightBarline = bar.Barline("regular")
    for el in list(perf.recurse().getElementsByClass((repeat.RepeatExpression, spanner.RepeatBracket))):
        if el.activeSite is not None:
            el.activeSite.remove(el)
    for sp in list(perf.spannerBundle.getByClass(spanner.RepeatBracket)):
        perf.spannerBundle.remove(sp)
    for i, part in enumerate(perf.parts):
        inst = instrument.Instrument()
        inst.midiProgram = program
        inst.midiChannel = i if i < 9 else i + 1  # channel 10 (index 9) is percussion in GM
        part.insert(0, inst)
    first = perf.parts[0].getElementsByClass(stream.Measure)[0]
    first.insert(0, tempo.MetronomeMark(number=bpm))
    return perf


_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def number_word(n: int) -> str:
    return _NUMBER_WORDS[n] if 0 <= n < len(_NUMBER_WORDS) else str(n)


def tempo_term(beat_bpm: float) -> str:
    """Conventional tempo word for a beat rate (beats per minute)."""
    for limit, term in ((60, "largo"), (76, "adagio"), (108, "andante"), (120, "moderato"),
                        (156, "allegro"), (176, "vivace")):
        if beat_bpm < limit:
            return term
    return "presto"


def describe(excerpt, *, bpm: int) -> dict:
    """What can be heard or seen in an excerpt: key, mode, meter, tempo term, voices, register."""
    from music21 import meter

    key = excerpt.analyze("key")
    tonic = key.tonic.name.replace("-", "-flat").replace("#", "-sharp")
    ts_list = list(excerpt.recurse().getElementsByClass(meter.TimeSignature))
    ts = ts_list[0] if ts_list else None
    beat_ql = float(ts.beatDuration.quarterLength) if ts else 1.0
    pitches = [p.midi for n in excerpt.recurse().notes for p in n.pitches]
    mean_pitch = sum(pitches) / len(pitches)
    register = "low" if mean_pitch < 53 else "middle" if mean_pitch <= 66 else "high"
    return {
        "key": f"{tonic} {key.mode}",
        "mode": key.mode,
        "meter": ts.ratioString if ts else "",
        "meter_kind": ts.classification.lower() if ts else "",
        "tempo_term": tempo_term(bpm / beat_ql),
        "beat_bpm": int(round(bpm / beat_ql)),
        "voices": len(excerpt.parts),
        "register": register,
        "n_notes": len(pitches),
    }


def piece_metadata(score, piece: Piece, collection: Collection) -> dict:
    """Title and composer of a piece (from its file, else the collection's table)."""
    md = score.metadata
    title = (md.title if md is not None else None) or ""
    composer = (md.composer if md is not None else None) or ""
    folder = piece.source.split("/", 1)[0]
    if piece.number is not None:
        composer = ""  # the C: field of the tune books holds an origin ("Irish"), not a composer
    composer = collection.composers.get(folder) or collection.composer or composer
    if not title:
        stem = piece.source.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        title = stem.replace("_", " ")
    genre = collection.genre
    for prefix, value in sorted(collection.genres.items(), key=lambda kv: -len(kv[0])):
        if piece.source.startswith(prefix) or folder == prefix:
            genre = value
            break
    if piece.rhythm:
        genre = piece.rhythm.replace("slipjig", "slip jig")
    return {"title": " ".join(str(title).split()), "composer": " ".join(str(composer).split()),
            "genre": genre}
