"""What the demo corpus is made of: the collections of the music21 core corpus and their pieces.

A *collection* is a folder (or a few folders) of the music21 corpus with its rendering choices:
the instruments and tempo range that fit its genre, and caps on pieces and excerpts that keep
the corpus balanced. A *piece* is one file, or one tune of a multi-tune ABC file. Nothing here
parses music: pieces are listed from file names and ABC ``X:`` lines, so planning is instant.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

# General MIDI programs (0-based) of the instruments the corpus is rendered with. The names are
# what a caption says; they must describe what is heard.
INSTRUMENTS: dict[str, int] = {
    "piano": 0,
    "harpsichord": 6,
    "organ": 19,
    "accordion": 21,
    "guitar": 24,
    "violin": 40,
    "string ensemble": 48,
    "choir": 52,
    "oboe": 68,
    "clarinet": 71,
    "flute": 73,
    "recorder": 74,
    "fiddle": 110,
}

# Preferred source format when the same piece exists in several (music21 ships some twice).
_FORMAT_RANK = {".mxl": 0, ".xml": 1, ".musicxml": 2, ".krn": 3, ".abc": 4}


@dataclass(frozen=True)
class Collection:
    """One balanced slice of the corpus and how its excerpts are rendered.

    ``genre`` is the form word used by both caption styles; ``name`` and ``composer`` only ever
    appear in the *full* caption. ``bpm`` is a range of quarter-note tempi.
    """

    key: str
    folders: tuple[str, ...]
    name: str
    genre: str
    programs: tuple[str, ...]
    bpm: tuple[int, int]
    max_pieces: int
    max_excerpts: int
    composer: str = ""
    composers: dict[str, str] = field(default_factory=dict)  # folder -> composer
    genres: dict[str, str] = field(default_factory=dict)  # folder or file prefix -> genre
    skip: tuple[str, ...] = ()  # regular expressions on the path inside the corpus
    abc_rhythm: bool = False  # ABC ``R:`` field gives the tune type (reel, jig, ...)
    global_numbers: bool = False  # ABC ``X:`` numbers the tunes of the whole book (files overlap)


_DANCE = ("fiddle", "flute", "accordion", "piano")
COLLECTIONS: tuple[Collection, ...] = (
    Collection(
        "bach", ("bach",), "the Bach chorales", "four-part chorale",
        ("organ", "string ensemble", "choir", "piano"), (60, 88), 420, 4,
        composer="Johann Sebastian Bach",
    ),
    Collection(
        "palestrina", ("palestrina",), "the Palestrina masses", "Renaissance mass movement",
        ("choir", "organ", "string ensemble", "recorder"), (110, 160), 460, 3,
        composer="Giovanni Pierluigi da Palestrina",
    ),
    Collection(
        "monteverdi", ("monteverdi",), "Monteverdi's madrigal books", "madrigal",
        ("choir", "string ensemble", "recorder", "harpsichord"), (80, 120), 60, 10,
        composer="Claudio Monteverdi", skip=(r"_old\.",),
    ),
    Collection(
        "trecento", ("trecento",), "the Trecento repertory (PMFC)", "fourteenth-century polyphonic piece",
        ("recorder", "choir", "string ensemble", "organ"), (90, 140), 120, 8,
    ),
    Collection(
        # (The corpus's Josquin ABC files hold one voice per tune without bar lines: not usable.)
        "early", ("ciconia", "luca", "lusitano"), "early music in the music21 corpus",
        "Renaissance polyphonic piece", ("choir", "recorder", "organ", "string ensemble"), (90, 140), 20, 14,
        composers={"ciconia": "Johannes Ciconia", "luca": "Gregorio Luca", "lusitano": "Vicente Lusitano"},
    ),
    Collection(
        "quartets", ("beethoven", "haydn", "mozart"), "the Classical string quartets of the music21 corpus",
        "string quartet movement", ("string ensemble", "piano", "organ"), (72, 144), 80, 14,
        composers={"beethoven": "Ludwig van Beethoven", "haydn": "Joseph Haydn",
                   "mozart": "Wolfgang Amadeus Mozart"},
        genres={"mozart/k545": "piano sonata movement"},
    ),
    Collection(
        "various", ("schubert", "schumann_robert", "schumann_clara", "chopin", "beach", "weber", "verdi",
                    "joplin", "liliuokalani", "johnson_j_r", "leadSheet", "webern", "schoenberg", "corelli",
                    "handel", "cpebach"),
        "assorted works of the music21 corpus", "instrumental piece",
        ("piano", "string ensemble", "harpsichord", "organ"), (66, 132), 40, 14,
        composers={"schubert": "Franz Schubert", "schumann_robert": "Robert Schumann",
                   "schumann_clara": "Clara Schumann", "chopin": "Frederic Chopin", "beach": "Amy Beach",
                   "weber": "Carl Maria von Weber", "verdi": "Giuseppe Verdi", "joplin": "Scott Joplin",
                   "liliuokalani": "Liliuokalani", "johnson_j_r": "J. Rosamond Johnson",
                   "webern": "Anton Webern", "schoenberg": "Arnold Schoenberg",
                   "corelli": "Arcangelo Corelli",
                   "handel": "George Frideric Handel", "cpebach": "Carl Philipp Emanuel Bach"},
        genres={"schubert": "song", "schumann_robert/dichterliebe": "song", "joplin": "ragtime",
                "leadSheet": "song", "liliuokalani": "song", "johnson_j_r": "song",
                "corelli": "trio sonata movement",
                "schoenberg": "atonal piece", "webern": "atonal piece"},
    ),
    Collection(
        "essen", ("essenFolksong",), "the Essen Folksong Collection", "folk song",
        ("flute", "clarinet", "oboe", "piano"), (72, 126), 1300, 2,
        skip=(r"/test", r"/variant"),
        genres={"essenFolksong/ballad": "ballad", "essenFolksong/kinder": "children's song"},
    ),
    Collection(
        "oneills", ("oneills1850",), "O'Neill's Music of Ireland (1850)", "folk tune",
        _DANCE, (150, 200), 800, 2, abc_rhythm=True, global_numbers=True,
        # Files that repeat tunes of other files (other transcriptions of the same numbers).
        skip=(r"0626-0635", r"0732-0758_mh", r"1116-1135_ml", r"1556-1576", r"1577-1624", r"1710-1750"),
    ),
    Collection(
        "ryans", ("ryansMammoth",), "Ryan's Mammoth Collection (1883)", "fiddle tune",
        _DANCE, (150, 200), 700, 2, abc_rhythm=True,
    ),
    Collection(
        "airds", ("airdsAirs",), "Aird's Selection of Scotch, English, Irish and Foreign Airs", "air",
        ("flute", "violin", "piano", "recorder"), (80, 132), 500, 2,
    ),
    Collection(
        "minstrelsy", ("miscFolk", "nottingham-dataset"), "fife and minstrelsy tune books", "folk tune",
        ("flute", "fiddle", "accordion", "piano"), (100, 160), 200, 2, abc_rhythm=True,
    ),
)

COLLECTIONS_BY_KEY = {c.key: c for c in COLLECTIONS}


@dataclass(frozen=True)
class Piece:
    """A piece to excerpt: a corpus file, or tune ``number`` (the ABC ``X:``) of a multi-tune file."""

    piece_id: str
    collection: str
    source: str  # path inside the music21 corpus, with forward slashes
    number: int | None = None
    rhythm: str = ""  # ABC ``R:`` field, lower-cased ("reel", "jig", ...)


def corpus_root() -> Path:
    """The installed music21 core corpus folder."""
    import music21

    return Path(music21.__file__).resolve().parent / "corpus"


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of ``parts`` that is the same in every process and Python version."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def slug(text: str) -> str:
    """Lower-case ASCII identifier piece: runs of other characters become one ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


_ABC_TUNE = re.compile(r"^X:\s*(\d+)", re.M)


def _abc_tunes(path: Path) -> list[tuple[int, str]]:
    """(number, rhythm) of each tune of an ABC file, first occurrence of a number only."""
    text = path.read_text(encoding="latin-1")
    starts = [(m.start(), int(m.group(1))) for m in _ABC_TUNE.finditer(text)]
    out, seen = [], set()
    for i, (pos, number) in enumerate(starts):
        if number in seen:
            continue
        seen.add(number)
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        rhythm = re.search(r"^R:\s*(.*)$", text[pos:end], re.M)
        out.append((number, rhythm.group(1).strip().lower() if rhythm else ""))
    return out


def list_pieces(collection: Collection, *, root: Path | None = None) -> list[Piece]:
    """All pieces of ``collection`` in the installed corpus, in a fixed order (sorted by source)."""
    root = root or corpus_root()
    best: dict[str, Path] = {}
    for folder in collection.folders:
        base = root / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            suffix = path.suffix.lower()
            rel = path.relative_to(root).as_posix()
            if suffix not in _FORMAT_RANK or "choraleAnalyses" in rel:
                continue
            if any(re.search(pattern, rel) for pattern in collection.skip):
                continue
            stem = rel[: -len(path.suffix)]
            if stem not in best or _FORMAT_RANK[suffix] < _FORMAT_RANK[best[stem].suffix.lower()]:
                best[stem] = path
    pieces, numbers_seen = [], set()
    for stem in sorted(best):
        path = best[stem]
        rel = path.relative_to(root).as_posix()
        if path.suffix.lower() == ".abc":
            tunes = _abc_tunes(path)
            for number, rhythm in tunes:
                if collection.global_numbers:
                    if number in numbers_seen:
                        continue  # the same tune of the book, transcribed in two files
                    numbers_seen.add(number)
                pid = f"{collection.key}/{slug(stem.split('/', 1)[-1])}/x{number}"
                rhythm = rhythm if collection.abc_rhythm and re.fullmatch(r"[a-z ]{3,20}", rhythm) else ""
                pieces.append(Piece(pid, collection.key, rel, number, rhythm))
        else:
            pieces.append(Piece(f"{collection.key}/{slug(stem.split('/', 1)[-1])}", collection.key, rel))
    return pieces


SPLITS = ("train", "val", "test")


def plan_pieces(
    *, seed: int = 0, collections: tuple[str, ...] | None = None, root: Path | None = None
) -> list[tuple[Piece, str]]:
    """Choose the pieces of the corpus and their split, interleaved across collections.

    Within a collection, pieces are ordered by a seeded hash, the first ``max_pieces`` are kept,
    and the i-th piece goes to ``test`` when ``(i + k) % 10 == 0``, to ``val`` when it is 1, else
    to ``train`` (about 80/10/10 *by piece*; ``k`` is the collection's position, so that any prefix
    of the interleaved order already mixes the splits). The result alternates between collections
    (round robin), so a ``--limit`` build is a balanced sample.

    Example:
        >>> plan = plan_pieces(seed=0, collections=("bach",))
        >>> plan[0][1] in SPLITS
        True
    """
    chosen = [c for c in COLLECTIONS if collections is None or c.key in collections]
    lanes = []
    for position, coll in enumerate(chosen):
        pieces = sorted(list_pieces(coll, root=root), key=lambda p: stable_hash(seed, p.piece_id))
        lane = []
        for i, piece in enumerate(pieces[: coll.max_pieces]):
            r = (i + position) % 10
            lane.append((piece, "test" if r == 0 else "val" if r == 1 else "train"))
        lanes.append(lane)
    out = []
    for i in range(max((len(lane) for lane in lanes), default=0)):
        out.extend(lane[i] for lane in lanes if i < len(lane))
    return out
