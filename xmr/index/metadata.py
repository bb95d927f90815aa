"""Index metadata rows: the item ``id`` as a string and one plain-string ``caption`` per vector."""

from __future__ import annotations

from typing import Any

from xmr.errors import InputError


def first_caption(value: Any) -> str:
    """The first caption of a caption cell (a string, a list of strings, or missing)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        items = list(value)
    except TypeError:
        return str(value)
    return str(items[0]) if items else ""


def clean_metadata(frame) -> Any:
    """Copy a metadata frame with a string ``id`` and a plain-string ``caption`` column."""
    import pandas as pd

    df = pd.DataFrame(frame).reset_index(drop=True).copy()
    if "id" not in df.columns:
        raise InputError("index metadata needs an 'id' column")
    df["id"] = df["id"].astype(str)
    if "caption" in df.columns:
        df["caption"] = [first_caption(v) for v in df["caption"]]
    else:
        df["caption"] = ""
    return df
