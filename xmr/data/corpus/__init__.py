"""The demo corpus: music21 excerpts as audio, engraved score image and two captions.

``xmr corpus build --out DIR`` writes ``DIR/manifest.parquet`` and the media; the repository
ships only the manifest, and :func:`media_path` renders any item's audio or image on demand
(deterministically, into a cache folder) from the installed music21 corpus.

Manifest columns: the foundation's ``id, split, audio, image, caption`` (``caption`` is the list
``[caption_full, caption_content]``, also stored as the two separate columns), ``audio_unseen``
(test split only: the same excerpt rendered with a soundfont training never uses), metadata
(``collection, collection_name, composer, title, genre, key, mode, meter, meter_kind, tempo_bpm,
tempo_term, beat_bpm, instrument, program, voices, register, n_measures, duration``) and what rendering
needs (``source`` inside the corpus, ``tune`` = ABC ``X:`` number or -1, ``measure_start``,
``measure_end`` (0-based bar indices,
inclusive), ``tempo_bpm`` (quarter notes per minute), ``program``, ``soundfont``, ``soundfont_unseen``).
Bar alignment, one entry per bar: ``bar_onsets``/``bar_ends`` (seconds in the audio),
``bar_x0``/``bar_x1`` (pixel columns ``[x0, x1)`` in the image), ``bar_y0``/``bar_y1`` (pixel rows
of the bar's system); see :func:`xmr.data.manifest.bar_alignment`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from xmr.errors import InputError, MissingAssetError

MODALITIES = ("audio", "image", "audio_unseen")

__all__ = ["MODALITIES", "build_corpus", "media_path", "render_media"]


def build_corpus(**kwargs):
    """See :func:`xmr.data.corpus.build.build_corpus`."""
    from xmr.data.corpus.build import build_corpus as _build

    return _build(**kwargs)


def _get(row, name, default=None):
    try:
        value = row[name]
    except (KeyError, IndexError):
        return default
    # pandas gives NaN (not None) for a missing string, e.g. ``audio_unseen`` outside the test split
    missing = value is None or (isinstance(value, float) and value != value)
    return default if missing else value


def render_media(row, modality: str, path: str | Path) -> Path:
    """Render one item's ``modality`` ("audio", "image" or "audio_unseen") from its manifest row.

    Gives the same bytes as the corpus build. Example:
        >>> render_media(df.iloc[0], "image", "/tmp/x.png")  # doctest: +SKIP
    """
    from xmr.data.corpus import render
    from xmr.data.corpus.excerpts import ExcerptError, load_piece, make_excerpt, set_performance

    if modality not in MODALITIES:
        raise InputError(f"unknown modality {modality!r}; choose from {', '.join(MODALITIES)}")
    ident = _get(row, "id", "?")
    needed = ("source", "measure_start", "measure_end", "tempo_bpm", "program", "duration")
    if any(_get(row, k) is None for k in needed):
        raise MissingAssetError(
            f"item {ident}: no {modality} file, and the row has no demo-corpus columns to render it from"
        )
    sf_name = _get(row, "soundfont_unseen") if modality == "audio_unseen" else _get(row, "soundfont")
    if modality != "image" and not sf_name:
        raise InputError(f"item {ident} has no {modality} view")
    path = Path(path)
    try:
        tune = int(_get(row, "tune", -1))
        score = load_piece(str(row["source"]), tune if tune >= 0 else None)
        excerpt = make_excerpt(score, int(row["measure_start"]), int(row["measure_end"]))
        if modality == "image":
            render.render_image(excerpt, path)
            return path
        performance = set_performance(excerpt, bpm=int(row["tempo_bpm"]), program=int(row["program"]))
        render.render_audio(performance, path, soundfont=render.find_soundfont(str(sf_name)),
                            seconds=float(row["duration"]))
    except (ExcerptError, render.RenderError) as exc:
        raise InputError(f"item {ident}: cannot render {modality}: {exc}") from exc
    finally:
        _release_freed_memory()
    return path


def _release_freed_memory() -> None:
    """Hand the heap freed by a render back to the OS (glibc's ``malloc_trim``; elsewhere nothing).

    A parsed score is tens of MB of small objects; once freed, glibc keeps the pages, so a long-running
    app that renders items on demand would grow with every distinct piece. Costs about a millisecond.
    """
    global _LIBC
    if _LIBC is None:
        import ctypes
        import ctypes.util

        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim  # noqa: B018 - glibc only
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None


def media_path(row, modality: str, *, manifest_dir: str | Path | None = None,
               cache_dir: str | Path | None = None) -> Path:
    """Path of an item's audio or image file, rendering it into the cache when it is not on disk.

    Args:
        row: a manifest row (pandas Series or dict) of the demo corpus.
        modality: "audio", "image" or "audio_unseen" (test split only).
        manifest_dir: folder the row's relative media paths are relative to (absolute paths, as
            ``read_manifest`` gives them, are used as they are).
        cache_dir: where on-demand renderings go (default ``xmr.paths.cache_dir()``).

    Example:
        >>> df = pd.read_parquet("assets/demo/manifest.parquet")  # doctest: +SKIP
        >>> media_path(df.iloc[0], "audio")  # doctest: +SKIP
        PosixPath('/home/me/.cache/xmr/corpus/audio/bach-bwv66-6-m001-3f2a9c1e.flac')
    """
    from xmr import paths
    from xmr.data.corpus import render

    if modality not in MODALITIES:
        raise InputError(f"unknown modality {modality!r}; choose from {', '.join(MODALITIES)}")
    rel = _get(row, modality)
    if manifest_dir is None:
        # read_manifest makes audio/image absolute but leaves audio_unseen as written: find the
        # manifest's folder from the absolute audio path (<dir>/audio/<id>.flac).
        audio = Path(str(_get(row, "audio", "")))
        if audio.is_absolute() and audio.parent.name == "audio":
            manifest_dir = audio.parent.parent
    if rel:
        candidate = Path(str(rel))
        if not candidate.is_absolute() and manifest_dir is not None:
            candidate = Path(manifest_dir) / candidate
        if candidate.is_absolute() and candidate.is_file():
            return candidate
    elif modality == "audio_unseen":
        raise InputError(f"item {row['id']} has no audio_unseen view (test split only)")
    # The cache name carries everything the rendering depends on, so a changed row never reuses
    # a stale file.
    keys = ("source", "tune", "measure_start", "measure_end", "tempo_bpm", "program", "duration",
            "soundfont_unseen" if modality == "audio_unseen" else "soundfont")
    fingerprint = "|".join(str(_get(row, k, "")) for k in keys) + f"|{modality}|{render.RENDER_VERSION}"
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:10]
    ext = "png" if modality == "image" else "flac"
    target = Path(cache_dir or paths.cache_dir()) / "corpus" / modality / f"{row['id']}-{digest}.{ext}"
    if target.is_file():
        return target
    return render_media(row, modality, target)
