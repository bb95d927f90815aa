"""Readers that turn public dataset files into manifests (see :mod:`xmr.data.manifest`).

=============  =========================================  ======================================
reader         file                                       one manifest row per
=============  =========================================  ======================================
``coco``       COCO captions JSON (``captions_*.json``)   image, with all its captions
``karpathy``   Karpathy split JSON (``dataset_*.json``,   image, with its sentences; the split
               Flickr30K, Flickr8K, COCO)                 from the file (``restval`` -> train)
``audiocaps``  AudioCaps CSV (``train.csv`` ...)          clip (``youtube_id`` + ``start_time``)
``clotho``     Clotho captions CSV                        audio file, with ``caption_1..5``
=============  =========================================  ======================================

Media paths are built from a root folder you give (default: the folder of the dataset file) and
made absolute; nothing is downloaded or checked on disk. Malformed input raises
:class:`xmr.errors.ManifestError` naming the file, the row (entries and data rows counted from 1)
and the field.

Example::

    from xmr.data.readers import read_dataset
    from xmr.data.manifest import write_manifest
    df = read_dataset("karpathy", "dataset_flickr30k.json", image_root="flickr30k-images")
    write_manifest(df, "flickr30k/manifest.parquet")
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from xmr.data.manifest import validate_manifest
from xmr.errors import ManifestError

PathLike = str | os.PathLike


# --------------------------------------------------------------------------- COCO captions


def read_coco_captions(
    path: PathLike, *, image_root: PathLike | None = None, split: str | None = None
) -> pd.DataFrame:
    """COCO captions JSON (``images`` + ``annotations``) to a manifest, one row per image.

    Args:
        path: e.g. ``annotations/captions_val2017.json``.
        image_root: folder of the image files (default: the JSON file's folder).
        split: split of every row (default: ``train``/``val``/``test`` from the file name).

    Returns:
        Manifest with ``id`` = the COCO image id, ``image``, ``caption`` (by annotation id), and
        metadata ``width``, ``height``.

    Example::

        df = read_coco_captions("annotations/captions_val2017.json", image_root="val2017", split="test")
    """
    path = Path(path)
    data = _load_json(path)
    split = split or _split_from_name(path)
    root = Path(image_root) if image_root is not None else path.parent
    images = _list_field(data, "images", path.name)
    annotations = _list_field(data, "annotations", path.name, required=False)

    rows: dict[int, dict[str, Any]] = {}
    for i, img in enumerate(images, start=1):
        where = f"{path.name}: images row {i}"
        if not isinstance(img, dict):
            raise ManifestError(f"{where}: expected an object")
        image_id = _int_field(img, "id", where)
        file_name = _str_field(img, "file_name", where)
        if image_id in rows:
            raise ManifestError(f"{where}, field 'id': duplicate image id {image_id}")
        rows[image_id] = {"id": str(image_id), "split": split, "audio": None, "image": str(root / file_name),
                          "captions": [], "width": img.get("width"), "height": img.get("height")}
    for i, ann in enumerate(annotations, start=1):
        where = f"{path.name}: annotations row {i}"
        if not isinstance(ann, dict):
            raise ManifestError(f"{where}: expected an object")
        image_id = _int_field(ann, "image_id", where)
        caption = _str_field(ann, "caption", where)
        if image_id not in rows:
            raise ManifestError(f"{where}, field 'image_id': image {image_id} is not listed in 'images'")
        rows[image_id]["captions"].append((ann.get("id", i), caption))
    for row in rows.values():
        row["caption"] = [c for _, c in sorted(row.pop("captions"), key=lambda t: _sort_key(t[0]))]
    return _finish(list(rows.values()), path, root, ["width", "height"])


# --------------------------------------------------------------------------- Karpathy splits


def read_karpathy(
    path: PathLike, *, image_root: PathLike | None = None, restval: str = "train"
) -> pd.DataFrame:
    """Karpathy split JSON (``dataset_flickr30k.json``, ``dataset_coco.json``, ...) to a manifest.

    Args:
        path: the JSON file (``{"images": [...], "dataset": ...}``).
        image_root: folder of the images; an entry's ``filepath`` (COCO: ``train2014``/``val2014``)
            is joined below it. Default: the JSON file's folder.
        restval: split name given to the ``restval`` images (``"train"`` as the usual 113k COCO
            training set, or ``"restval"`` to keep them apart).

    Returns:
        Manifest with ``id`` = ``cocoid`` when present, else the file name without suffix; the
        captions are the sentences' ``raw`` text; metadata ``dataset``, ``karpathy_split``.

    Example::

        df = read_karpathy("dataset_coco.json", image_root="coco")
        test = df[df.split == "test"]  # the 5k Karpathy test images
    """
    path = Path(path)
    data = _load_json(path)
    root = Path(image_root) if image_root is not None else path.parent
    images = _list_field(data, "images", path.name)
    dataset = data.get("dataset") if isinstance(data, dict) else None
    rows = []
    for i, img in enumerate(images, start=1):
        where = f"{path.name}: images row {i}"
        if not isinstance(img, dict):
            raise ManifestError(f"{where}: expected an object")
        filename = _str_field(img, "filename", where)
        original = _str_field(img, "split", where)
        if original not in ("train", "val", "test", "restval"):
            raise ManifestError(f"{where}, field 'split': {original!r} is not train, val, test or restval")
        sentences = img.get("sentences", [])
        if not isinstance(sentences, list):
            raise ManifestError(f"{where}, field 'sentences': expected a list")
        captions = []
        for j, sent in enumerate(sentences, start=1):
            text = _sentence_text(sent)
            if not text:
                raise ManifestError(f"{where}, field 'sentences': sentence {j} has no 'raw' text or tokens")
            captions.append(text)
        item_id = str(img["cocoid"]) if img.get("cocoid") is not None else Path(filename).stem
        sub = img.get("filepath") or ""
        rows.append({"id": item_id, "split": restval if original == "restval" else original, "audio": None,
                     "image": str(root / sub / filename), "caption": captions, "dataset": dataset,
                     "karpathy_split": original})
    return _finish(rows, path, root, ["dataset", "karpathy_split"])


# --------------------------------------------------------------------------- AudioCaps


def read_audiocaps(
    path: PathLike,
    *,
    audio_root: PathLike | None = None,
    split: str | None = None,
    audio_template: str = "{youtube_id}_{start_time}.wav",
) -> pd.DataFrame:
    """AudioCaps CSV (``audiocap_id,youtube_id,start_time,caption``) to a manifest, one row per clip.

    Rows of the same ``youtube_id`` and ``start_time`` are one clip (5 captions in val/test).

    Args:
        path: ``train.csv``, ``val.csv`` or ``test.csv``.
        audio_root: folder of the downloaded clips (default: the CSV's folder).
        split: split of every row (default: from the file name).
        audio_template: file name of a clip, formatted with ``youtube_id``, ``start_time`` and
            ``audiocap_id`` (the first of the clip).

    Returns:
        Manifest with ``id`` = ``"{youtube_id}_{start_time}"``, ``audio``, ``caption`` (ordered by
        ``audiocap_id``), metadata ``youtube_id``, ``start_time``.

    Example::

        df = read_audiocaps("audiocaps/test.csv", audio_root="audiocaps/audio",
                            audio_template="Y{youtube_id}.wav")
    """
    path = Path(path)
    table = _read_csv(path, required=("audiocap_id", "youtube_id", "start_time", "caption"))
    split = split or _split_from_name(path)
    root = Path(audio_root) if audio_root is not None else path.parent
    clips: dict[tuple[str, int], dict[str, Any]] = {}
    for row_no, rec in enumerate(table.to_dict(orient="records"), start=1):
        where = f"{path.name}: row {row_no}"
        cap_id = _int_cell(rec["audiocap_id"], where, "audiocap_id")
        yt = _str_cell(rec["youtube_id"], where, "youtube_id")
        start = _int_cell(rec["start_time"], where, "start_time")
        caption = _str_cell(rec["caption"], where, "caption")
        key = (yt, start)
        if key not in clips:
            try:
                name = audio_template.format(youtube_id=yt, start_time=start, audiocap_id=cap_id)
            except (KeyError, IndexError, ValueError) as err:
                raise ManifestError(f"audio_template {audio_template!r} is not usable ({err})") from None
            clips[key] = {"id": f"{yt}_{start}", "split": split, "audio": str(root / name), "image": None,
                          "captions": [], "youtube_id": yt, "start_time": start}
        clips[key]["captions"].append((cap_id, caption))
    rows = []
    for clip in clips.values():
        clip["caption"] = [c for _, c in sorted(clip.pop("captions"))]
        rows.append(clip)
    return _finish(rows, path, root, ["youtube_id", "start_time"])


# --------------------------------------------------------------------------- Clotho


CLOTHO_SPLITS = {"development": "train", "validation": "val", "evaluation": "test", "test": "test"}


def read_clotho(
    path: PathLike,
    *,
    audio_root: PathLike | None = None,
    split: str | None = None,
    metadata: PathLike | None = None,
) -> pd.DataFrame:
    """Clotho captions CSV (``file_name,caption_1..caption_5``) to a manifest, one row per file.

    Args:
        path: e.g. ``clotho_captions_development.csv``.
        audio_root: folder of the audio files (default: the CSV's folder).
        split: split of every row (default from the file name: development -> train,
            validation -> val, evaluation -> test).
        metadata: optional ``clotho_metadata_*.csv``; its ``keywords``, ``sound_id``,
            ``manufacturer`` and ``license`` columns are joined by ``file_name``.

    Returns:
        Manifest with ``id`` = the file name without suffix, ``audio``, ``caption`` (non-empty
        ``caption_*`` cells in column order), metadata ``file_name`` (+ the joined columns).

    Example::

        df = read_clotho("clotho_captions_evaluation.csv", audio_root="evaluation")
    """
    path = Path(path)
    table = _read_csv(path, required=("file_name",))
    cap_cols = sorted((c for c in table.columns if re.fullmatch(r"caption_\d+", c)), key=lambda c: int(c[8:]))
    if not cap_cols:
        raise ManifestError(f"{path.name}: no caption_1, caption_2, ... columns")
    split = split or _split_from_name(path, CLOTHO_SPLITS)
    root = Path(audio_root) if audio_root is not None else path.parent
    seen: dict[str, int] = {}
    rows = []
    for row_no, rec in enumerate(table.to_dict(orient="records"), start=1):
        where = f"{path.name}: row {row_no}"
        file_name = _str_cell(rec["file_name"], where, "file_name")
        if file_name in seen:
            raise ManifestError(f"{where}, column 'file_name': {file_name!r} repeats row {seen[file_name]}")
        seen[file_name] = row_no
        captions = [str(rec[c]).strip() for c in cap_cols if not _blank(rec[c])]
        if not captions:
            raise ManifestError(f"{where}, column {cap_cols[0]!r}: no caption in {', '.join(cap_cols)}")
        rows.append({"id": Path(file_name).stem, "split": split, "audio": str(root / file_name),
                     "image": None, "caption": captions, "file_name": file_name})
    extra = ["file_name"]
    if metadata is not None:
        extra += _join_clotho_metadata(rows, Path(metadata))
    return _finish(rows, path, root, extra)


def _join_clotho_metadata(rows: list[dict[str, Any]], path: Path) -> list[str]:
    table = _read_csv(path, required=("file_name",))
    keep = [c for c in ("keywords", "sound_id", "manufacturer", "license") if c in table.columns]
    by_name: dict[str, dict[str, Any]] = {}
    for row_no, rec in enumerate(table.to_dict(orient="records"), start=1):
        name = _str_cell(rec["file_name"], f"{path.name}: row {row_no}", "file_name")
        by_name[name] = {c: (None if _blank(rec[c]) else rec[c]) for c in keep}
    for row in rows:
        row.update(by_name.get(row["file_name"], dict.fromkeys(keep)))
    return keep


# --------------------------------------------------------------------------- registry

READERS: dict[str, Callable[..., pd.DataFrame]] = {
    "coco": read_coco_captions,
    "karpathy": read_karpathy,
    "audiocaps": read_audiocaps,
    "clotho": read_clotho,
}


def read_dataset(name: str, path: PathLike, **kwargs: Any) -> pd.DataFrame:
    """Read a public dataset file into a manifest with the reader registered as ``name``.

    Args:
        name: one of ``coco``, ``karpathy``, ``audiocaps``, ``clotho``.
        path: the dataset file.
        **kwargs: the reader's options (``image_root``, ``audio_root``, ``split``, ...).

    Example::

        df = read_dataset("clotho", "clotho_captions_development.csv", audio_root="development")
    """
    if name not in READERS:
        raise ManifestError(f"unknown dataset format {name!r}; choose from {', '.join(sorted(READERS))}")
    return READERS[name](path, **kwargs)


def concat_manifests(frames: list[pd.DataFrame], *, source: str = "combined manifest") -> pd.DataFrame:
    """Stack manifests (e.g. the train/val/test files of a dataset) and check the ids stay unique.

    Example::

        df = concat_manifests([read_clotho(p) for p in sorted(Path(".").glob("clotho_captions_*.csv"))])
    """
    if not frames:
        raise ManifestError(f"{source}: nothing to combine")
    return validate_manifest(pd.concat(frames, ignore_index=True), source=source)


# --------------------------------------------------------------------------- helpers


def _finish(rows: list[dict[str, Any]], path: Path, root: Path, extra: list[str]) -> pd.DataFrame:
    columns = ["id", "split", "audio", "image", "caption", *extra]
    frame = pd.DataFrame({c: pd.Series([r.get(c) for r in rows], dtype=object) for c in columns})
    for col in extra:
        frame[col] = frame[col].infer_objects()
    df = validate_manifest(frame, base_dir=Path.cwd(), source=path.name)
    df.attrs["source"] = str(path)
    return df


def _split_from_name(path: Path, names: dict[str, str] | None = None) -> str:
    names = names or {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test",
                      "dev": "val", "restval": "train"}
    tokens = [t for t in re.split(r"[^a-z]+", path.stem.lower()) if t]
    for token in reversed(tokens):  # 'captions_val2017' -> 'val'; 'dataset_train' -> 'train'
        if token in names:
            return names[token]
    raise ManifestError(f"{path.name}: cannot tell the split from the file name; pass split=")


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise ManifestError(f"dataset file not found: {path}")
    try:
        with open(path, encoding="utf-8-sig") as fh:
            return json.load(fh)
    except json.JSONDecodeError as err:
        raise ManifestError(
            f"{path.name}: invalid JSON at line {err.lineno}, column {err.colno} ({err.msg})"
        ) from None
    except UnicodeDecodeError as err:
        raise ManifestError(f"{path.name}: not UTF-8 text (byte {err.start})") from None


def _list_field(data: Any, key: str, name: str, *, required: bool = True) -> list:
    if not isinstance(data, dict):
        raise ManifestError(f"{name}: expected a JSON object with {key!r} at the top")
    if key not in data:
        if required:
            raise ManifestError(f"{name}: no {key!r} list at the top")
        return []
    if not isinstance(data[key], list):
        raise ManifestError(f"{name}: {key!r} must be a list")
    return data[key]


def _int_field(obj: dict, key: str, where: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        got = "missing" if value is None else f"{type(value).__name__} {json.dumps(value)[:40]}"
        raise ManifestError(f"{where}, field {key!r}: expected an integer, got {got}")
    return value


def _str_field(obj: dict, key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if value is None else ("empty" if isinstance(value, str) else type(value).__name__)
        raise ManifestError(f"{where}, field {key!r}: expected non-empty text, got {got}")
    return value.strip()


def _sentence_text(sent: Any) -> str:
    if isinstance(sent, str):
        return sent.strip()
    if not isinstance(sent, dict):
        return ""
    raw = sent.get("raw")
    if isinstance(raw, str) and raw.strip():
        return " ".join(raw.split())
    tokens = sent.get("tokens")
    if isinstance(tokens, list) and all(isinstance(t, str) for t in tokens):
        return " ".join(tokens).strip()
    return ""


def _sort_key(value: Any) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def _read_csv(path: Path, *, required: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise ManifestError(f"dataset file not found: {path}")
    table = None
    for encoding in ("utf-8-sig", "cp1252"):  # some Clotho releases are Windows-1252
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding)
            break
        except UnicodeDecodeError:
            continue
        except pd.errors.EmptyDataError:
            raise ManifestError(f"{path.name}: the file is empty (no header row)") from None
        except Exception as err:
            raise ManifestError(f"{path.name}: cannot parse CSV: {' '.join(str(err).split())}") from None
    if table is None:
        raise ManifestError(f"{path.name}: neither UTF-8 nor Windows-1252 text")
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ManifestError(
            f"{path.name}: missing column(s) {', '.join(missing)} (has: {', '.join(table.columns)})"
        )
    return table


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value) or not str(value).strip()


def _str_cell(value: Any, where: str, col: str) -> str:
    if _blank(value):
        raise ManifestError(f"{where}, column {col!r}: empty")
    return str(value).strip()


def _int_cell(value: Any, where: str, col: str) -> int:
    text = _str_cell(value, where, col)
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not number.is_integer():
        raise ManifestError(f"{where}, column {col!r}: expected a whole number, got {text[:40]!r}")
    return int(number)
