"""Extra renderings (views) of corpus items, drawn per item from a hash of its id.

Training items (split ``train``) get two views besides their main audio and image:

* ``audio_sf`` -- the same MIDI through another training soundfont (:data:`TRAIN_SOUNDFONTS`;
  never the main soundfont, never the unseen test soundfont TimGM6mb);
* ``image_layout`` -- the same bars engraved with a drawn Verovio layout (:func:`draw_layout`:
  a music font of :data:`TRAIN_FONTS`, spacing, staff size, a title on some, two systems on some).

Test items (split ``test``) get ``image_other``: the bars "by another engraver" -- the held-out font
:data:`HELD_OUT_FONT`, the piece's title and two systems (:func:`other_layout`) -- besides the
``audio_unseen`` rendering the manifest already lists. Validation items get no views.

The build writes one row per view to ``views.parquet`` beside the manifest (:data:`VIEW_COLUMNS`);
:func:`xmr.data.manifest.read_views` reads it.
"""

from __future__ import annotations

from xmr.data.corpus.catalog import stable_hash
from xmr.data.corpus.render import DEFAULT_SOUNDFONT, UNSEEN_SOUNDFONT, VEROVIO_SCALE, Layout

VIEWS_NAME = "views.parquet"
VIEWS_VERSION = 1  # bump when a draw below changes (it keys the piece records)

# Soundfonts of the audio_sf view (Debian packages musescore-general-soundfont-lossless, opl3-soundfont).
# The uncompressed sf2 of MuseScore General: FluidSynth loads only the samples a clip uses, where
# the compressed sf3 costs seconds of decoding per clip.
# Not used: FluidR3Mono_GM (the main FluidR3's samples in mono: nearly the same timbre) and
# FluidR3_GS (GS variation banks only: silent on the General MIDI programs the corpus plays).
TRAIN_SOUNDFONTS = ("MuseScore_General_Full.sf2", "OPL-3_FM_128M.sf2")
# SMuFL fonts shipped with Verovio; Petaluma (a handwritten style) is kept out of training.
TRAIN_FONTS = ("Bravura", "Gootville", "Leipzig", "Leland")
HELD_OUT_FONT = "Petaluma"
SPACING_LINEAR = (0.15, 0.25, 0.4)
SPACING_NON_LINEAR = (0.5, 0.6, 0.7)
SCALES = (28, VEROVIO_SCALE, 44)
TITLE_SHARE = 3  # one in TITLE_SHARE training layouts carries a title
TWO_SYSTEM_SHARE = 3  # one in TWO_SYSTEM_SHARE training layouts is broken into two systems

VIEWS = {"train": ("audio_sf", "image_layout"), "test": ("image_other",)}
TRAIN_VIEWS = VIEWS["train"]
VIEW_MODALITY = {"audio_sf": "audio", "image_layout": "image", "image_other": "image",
                 "audio_unseen": "audio"}

# One row per view in views.parquet.
VIEW_COLUMNS = ("id", "split", "view", "modality", "path", "soundfont", "font", "spacing_linear",
                "spacing_non_linear", "scale", "title", "systems", "bar_x0", "bar_x1", "bar_y0", "bar_y1")

assert DEFAULT_SOUNDFONT not in TRAIN_SOUNDFONTS and UNSEEN_SOUNDFONT not in TRAIN_SOUNDFONTS
assert HELD_OUT_FONT not in TRAIN_FONTS


def _pick(choices: tuple, what: str, ident: str):
    return choices[stable_hash("view", what, ident) % len(choices)]


def draw_soundfont(ident: str) -> str:
    """The training soundfont (file name) of item ``ident``'s ``audio_sf`` view."""
    return _pick(TRAIN_SOUNDFONTS, "soundfont", ident)


def draw_layout(ident: str, title: str) -> Layout:
    """The engraving of item ``ident``'s ``image_layout`` view; ``title``: the piece's title, shown
    on one in :data:`TITLE_SHARE` items. Never the main image's own layout."""
    layout = Layout(
        font=_pick(TRAIN_FONTS, "font", ident),
        spacing_linear=_pick(SPACING_LINEAR, "spacing_linear", ident),
        spacing_non_linear=_pick(SPACING_NON_LINEAR, "spacing_non_linear", ident),
        scale=_pick(SCALES, "scale", ident),
        title=title if stable_hash("view", "title", ident) % TITLE_SHARE == 0 and title else None,
        systems=2 if stable_hash("view", "systems", ident) % TWO_SYSTEM_SHARE == 0 else 1,
    )
    if layout == Layout():
        layout = Layout(title=title or "Untitled")
    return layout


def other_layout(title: str) -> Layout:
    """The ``image_other`` view of a test item: the held-out font, the title, two systems."""
    return Layout(font=HELD_OUT_FONT, title=title or "Untitled", systems=2)


def view_rel(view: str, ident: str) -> str:
    """Path of a view's file, relative to the manifest's folder (``image_layout/<id>.png``)."""
    return f"{view}/{ident}.{'png' if VIEW_MODALITY[view] == 'image' else 'flac'}"


def view_row(ident: str, split: str, view: str, *, soundfont: str | None = None,
             layout: Layout | None = None, systems: int | None = None, bars: dict | None = None) -> dict:
    """One row of views.parquet (:data:`VIEW_COLUMNS`)."""
    bars = bars or {}
    return {
        "id": ident, "split": split, "view": view, "modality": VIEW_MODALITY[view],
        "path": view_rel(view, ident), "soundfont": soundfont,
        "font": layout.font if layout else None,
        "spacing_linear": layout.spacing_linear if layout else None,
        "spacing_non_linear": layout.spacing_non_linear if layout else None,
        "scale": layout.scale if layout else None, "title": layout.title if layout else None,
        "systems": systems, **{k: bars.get(k) for k in ("bar_x0", "bar_x1", "bar_y0", "bar_y1")},
    }


def views_frame(rows: list[dict]):
    """The views table of a build: ``rows`` in :data:`VIEW_COLUMNS` order, sorted by id and view."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(VIEW_COLUMNS))
    for col in ("scale", "systems"):
        df[col] = df[col].astype("Int64")
    for col in ("spacing_linear", "spacing_non_linear"):
        df[col] = df[col].astype("float64")
    return df.sort_values(["id", "view"], kind="stable").reset_index(drop=True)
