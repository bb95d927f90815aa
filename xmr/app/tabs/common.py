"""What the tabs share: errors as ``gr.Error`` messages, and result media fetched off the event thread."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from xmr.app.service import RetrievalService
from xmr.errors import XmrError

__all__ = ["UI_MAX_K", "MediaFetcher", "gr_errors", "payload_path"]

log = logging.getLogger(__name__)

# Result slots drawn in the page (the API may ask for up to ServiceConfig.max_k).
UI_MAX_K = 20


def gr_errors(fn: Callable) -> Callable:
    """Turn the service's one-line errors (and unexpected ones) into ``gr.Error`` messages."""
    import gradio as gr

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except XmrError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except Exception as err:  # keep serving; say what failed without a traceback page
            # one line, the whole reason (a cut message hides the cause)
            raise gr.Error(f"something went wrong: {type(err).__name__}: {' '.join(str(err).split())}") \
                from err

    return wrapper


class MediaFetcher:
    """Items' audio and image files for the page, rendered on demand by the service; a card
    without its picture or clip is better than no card, so a failure is logged and shown as empty.

    Args:
        service: the loaded collection.
        workers: files fetched at once for a page of results.
    """

    def __init__(self, service: RetrievalService, *, workers: int = 2):
        self.service = service
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xmr-media")

    def get(self, item_id: str, modality: str) -> str | None:
        """The item's file, or ``None`` (logged) when it cannot be rendered."""
        try:
            return str(self.service.media(item_id, modality))
        except Exception as err:
            log.warning("cannot show the %s of %s: %s", modality, item_id, err)
            return None

    def score(self, hit: dict[str, Any]) -> str | None:
        """The result's score image, its matched bars highlighted when it has ``bars``."""
        if hit.get("bars"):
            try:
                return str(self.service.highlighted_image(hit["item_id"], hit["bars"]))
            except Exception as err:
                log.warning("cannot highlight the bars of %s: %s", hit["item_id"], err)
        return self.get(hit["item_id"], "image")

    def score_images(self, results: Sequence[dict[str, Any]] | None, slots: int) -> list[str | None]:
        """One score image per result slot (highlighted where matched), fetched in parallel."""
        results = list(results or [])[:slots]
        files = list(self._pool.map(self.score, results))
        return [files[i] if i < len(files) else None for i in range(slots)]

    def for_results(self, results: Sequence[dict[str, Any]] | None, modality: str, slots: int
                    ) -> list[str | None]:
        """One file per result slot (``None`` past the results), fetched in parallel."""
        results = list(results or [])[:slots]
        files = list(self._pool.map(lambda h: self.get(h["item_id"], modality), results))
        return [files[i] if i < len(files) else None for i in range(slots)]


def payload_path(payload: Any) -> str | None:
    """The file path of an input's value (a path or a ``{"path": ...}`` payload), else ``None``."""
    if isinstance(payload, dict):
        return payload.get("path")
    if isinstance(payload, (str, Path)) and str(payload):
        return str(payload)
    return None
