"""A folder of media becomes a manifest: ``xmr collection init DIR --out DIR/manifest.parquet``.

Audio and image files are paired by their stem, the file name without its extension, wherever
they lie under the folder (``audio/take5.flac`` + ``covers/take5.jpg`` -> item ``take5``),
or by a sidecar table (CSV or JSON list) whose rows name an ``id`` and its ``audio`` / ``image``
files. Captions come, in this order, from the sidecar's ``caption`` column, a ``STEM.txt`` beside
the media (one caption per line), or the audio file's tags (title, artist, album, genre, read with
mutagen). Other sidecar columns are kept as metadata. Splits are drawn with a seed
(``val``/``test`` fractions, at least one item each when there are enough items).

Example:
    >>> report = init_collection("my_records", out="my_records/manifest.parquet")  # doctest: +SKIP
    >>> print(report.table())  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xmr.errors import InputError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
TAG_KEYS = ("title", "artist", "album", "genre")


@dataclass
class CollectionReport:
    """What :func:`init_collection` did: items written, how many have each view, files skipped and why."""

    manifest: Path
    items: int = 0
    audio: int = 0
    image: int = 0
    captioned: int = 0
    paired: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    paired_ids: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)

    def table(self) -> str:
        """A short plain-text report (printed by the CLI)."""
        lines = [f"wrote {self.manifest}: {self.items} items ({self.paired} with audio and image, "
                 f"{self.audio} audio, {self.image} images, {self.captioned} with captions)",
                 "splits: " + ", ".join(f"{k} {v}" for k, v in sorted(self.splits.items()))]
        if self.paired_ids:
            shown = ", ".join(self.paired_ids[:10]) + (" ..." if len(self.paired_ids) > 10 else "")
            lines.append(f"paired: {shown}")
        lines.append(f"skipped {len(self.skipped)} files" + (":" if self.skipped else ""))
        lines += [f"  {name}: {why}" for name, why in self.skipped]
        return "\n".join(lines)


def audio_tags(path: str | Path) -> dict[str, str]:
    """Title/artist/album/genre of an audio file's tags (ID3, Vorbis, FLAC, MP4); ``{}`` without tags."""
    try:
        import mutagen
    except ImportError:  # tags are optional: no captions from them
        return {}
    try:
        tagged = mutagen.File(str(path), easy=True)
    except Exception:  # noqa: BLE001 - an unreadable tag block only loses the tags
        return {}
    if tagged is None or not tagged.tags:
        return {}
    out = {}
    for key in TAG_KEYS:
        value = tagged.tags.get(key)
        if value:
            out[key] = str(value[0] if isinstance(value, list) else value).strip()
    return {k: v for k, v in out.items() if v}


def caption_from_tags(tags: dict[str, str]) -> str | None:
    """``"Title by Artist, from Album (genre)"`` from whatever tags there are."""
    if not tags:
        return None
    text = tags.get("title", "")
    if tags.get("artist"):
        text = f"{text} by {tags['artist']}" if text else f"by {tags['artist']}"
    if tags.get("album"):
        text = f"{text}, from {tags['album']}" if text else f"from {tags['album']}"
    if tags.get("genre"):
        text = f"{text} ({tags['genre']})" if text else tags["genre"]
    return text.strip() or None


def _read_sidecar(path: Path) -> list[dict[str, Any]]:
    if path.suffix.lower() == ".csv":
        import pandas as pd

        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        return frame.to_dict("records")
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):  # {"id": {...}} or {"items": [...]}
        data = data.get("items", [{"id": k, **v} for k, v in data.items()])
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise InputError(f"{path}: a sidecar JSON is a list of objects (or an object of objects by id)")
    return data


def _captions(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value).strip()
    if text.startswith("["):
        try:
            return _captions(json.loads(text))
        except ValueError:
            pass
    return [text] if text else []


def _split_of(ids: list[str], *, seed: int, val: float, test: float) -> dict[str, str]:
    order = np.random.default_rng(seed).permutation(len(ids))
    n = len(ids)
    n_test = max(1, round(n * test)) if test > 0 and n >= 3 else 0
    n_val = max(1, round(n * val)) if val > 0 and n >= 3 else 0
    out = {}
    for rank, k in enumerate(order):
        out[ids[k]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return out


def _files(folder: Path, exclude: Iterable[Path]) -> list[Path]:
    skip = {p.resolve() for p in exclude}
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.resolve() not in skip
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def init_collection(folder: str | Path, *, out: str | Path | None = None,
                    sidecar: str | Path | None = None, seed: int = 0, val: float = 0.1, test: float = 0.1,
                    tags: bool = True) -> CollectionReport:
    """Write the manifest of a folder of audio and image files (see the module docstring).

    Args:
        folder: the collection folder (searched recursively; hidden files ignored).
        out: the manifest to write (default ``FOLDER/manifest.parquet``; ``.csv``/``.jsonl`` also work).
        sidecar: a CSV or JSON table of items (columns ``id``, ``audio``, ``image``, ``caption``, any
            metadata); default: ``FOLDER/captions.csv`` or ``FOLDER/metadata.json`` when present.
        seed: seed of the split assignment.
        val / test: fractions of items in the ``val`` and ``test`` splits.
        tags: take captions from audio tags when there is no other caption.

    Returns:
        A :class:`CollectionReport` (items, paired ids, skipped files with their reason).
    """
    import pandas as pd

    from xmr.data.manifest import write_manifest

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}")
    out = Path(out) if out is not None else folder / "manifest.parquet"
    if sidecar is None:
        sidecar = next((folder / n for n in ("captions.csv", "metadata.csv", "captions.json", "metadata.json")
                        if (folder / n).is_file()), None)
    sidecar = Path(sidecar) if sidecar is not None else None
    if sidecar is not None and not sidecar.is_file():
        raise InputError(f"sidecar not found: {sidecar}")
    report = CollectionReport(manifest=out)
    items: dict[str, dict[str, Any]] = {}
    texts: dict[str, Path] = {}
    for path in _files(folder, [out] + ([sidecar] if sidecar else [])):
        suffix, rel = path.suffix.lower(), path.relative_to(folder).as_posix()
        stem = path.stem  # audio/take5.flac and covers/take5.jpg are one item, take5
        kind = "audio" if suffix in AUDIO_SUFFIXES else "image" if suffix in IMAGE_SUFFIXES else None
        if suffix == ".txt":
            texts[stem] = path
            continue
        if kind is None:
            report.skipped.append((rel, f"not audio or an image ({suffix or 'no suffix'})"))
            continue
        item = items.setdefault(stem, {"id": stem})
        if kind in item:
            report.skipped.append((rel, f"a second {kind} file for item {stem!r} ({item[kind]} kept)"))
            continue
        item[kind] = rel
    rows_by_file = {}
    if sidecar is not None:
        for k, row in enumerate(_read_sidecar(sidecar), start=1):
            row = {str(c): v for c, v in row.items()}
            named = {c: str(row.get(c) or "").strip() for c in ("id", "audio", "image", "file")}
            first = named["audio"] or named["image"] or named["file"]
            key = named["id"] or (Path(first).stem if first else "")
            if not key:
                raise InputError(f"{sidecar}: row {k} names no id, audio, image or file")
            rows_by_file[key] = row
    for key, row in rows_by_file.items():  # a sidecar row may pair files with different stems
        item = items.get(key, {"id": key})
        for kind in ("audio", "image"):
            name = str(row.get(kind) or "").strip()
            if not name:
                continue
            if not (folder / name).is_file():
                report.skipped.append((name, f"named by {sidecar.name} but not found"))
                continue
            owner = Path(name).stem
            if owner != key and owner in items:  # moved from its own stem's item into this one
                items[owner].pop(kind, None)
            item[kind] = Path(name).as_posix()
        items[key] = item
    for stem, path in texts.items():
        if stem not in items and stem not in rows_by_file:
            report.skipped.append((path.relative_to(folder).as_posix(), "a text file with no audio or image"))
    rows = []
    for key in sorted(items):
        item = items[key]
        if "audio" not in item and "image" not in item:
            continue
        meta = rows_by_file.get(key, {})
        captions = _captions(meta.get("caption"))
        if not captions and key in texts:
            captions = _captions(texts[key].read_text(encoding="utf-8").splitlines())
        if tags and "audio" in item:
            found = audio_tags(folder / item["audio"])
            for t, v in found.items():
                item.setdefault(t, v)
            if not captions and (c := caption_from_tags(found)):
                captions = [c]
        for c, v in meta.items():
            if c not in ("id", "audio", "image", "caption", "file", "split") and str(v).strip():
                item[c] = v
        if str(meta.get("split") or "").strip():
            item["split"] = str(meta["split"]).strip()
        item["caption"] = captions
        rows.append(item)
    if not rows:
        raise InputError(f"{folder}: no audio or image files found")
    splits = _split_of([r["id"] for r in rows if "split" not in r], seed=seed, val=val, test=test)
    for r in rows:
        r.setdefault("split", splits.get(r["id"], "train"))
        r.setdefault("audio", None)
        r.setdefault("image", None)
    frame = pd.DataFrame(rows)
    frame["audio"] = [str((folder / a).resolve()) if a else None for a in frame["audio"]]
    frame["image"] = [str((folder / i).resolve()) if i else None for i in frame["image"]]
    front = ["id", "split", "audio", "image", "caption"]
    frame = frame[front + [c for c in frame.columns if c not in front]]
    write_manifest(frame, out)
    report.items = len(frame)
    report.audio = int(frame["audio"].notna().sum())
    report.image = int(frame["image"].notna().sum())
    report.captioned = int(sum(len(c) > 0 for c in frame["caption"]))
    both = frame["audio"].notna() & frame["image"].notna()
    report.paired = int(both.sum())
    report.paired_ids = [str(i) for i in frame.loc[both, "id"]]
    report.splits = {str(k): int(v) for k, v in frame["split"].value_counts().items()}
    return report
