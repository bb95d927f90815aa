"""Optional sync of judgements to a Hugging Face dataset repo (for Spaces, which have no persistent disk).

Off by default. When ``XMR_LABELS_HUB_REPO`` names a dataset repo (``user/xmr-labels``), the
store appends every event to JSONL files in a local folder that ``huggingface_hub.CommitScheduler``
uploads every few minutes. Layout of the folder (and of the repo):

```
data/queries-<host>-<pid>-<session>.jsonl     {"event": "query", "qid", "modality", "text" | "media", ...}
data/judgements-<host>-<pid>-<session>.jsonl  {"event": "judge" | "undo", "qid", "docno", "grade", ...}
media/<sha256><ext>                           copies of uploaded query media
```

Append-only: a line is never changed; an undo is a new ``"undo"`` line. Every process writes its
own files (the session part of the name), because the scheduler uploads whole files and two
replicas appending to one name would overwrite each other's lines. :func:`replay` rebuilds a store
from such a folder (a Space downloads the dataset at start and replays it).

Environment: ``XMR_LABELS_HUB_REPO`` (turns it on), ``XMR_LABELS_HUB_DIR`` (the local folder,
default ``<cache>/labels-hub``), ``XMR_LABELS_HUB_EVERY`` (minutes between commits, default 5),
``HF_TOKEN`` (read by huggingface_hub itself).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xmr.data.jsonl import jsonl_line, read_jsonl
from xmr.errors import InputError
from xmr.labels.schema import Judgement, Query, utc_now

if TYPE_CHECKING:
    from xmr.labels.store import LabelStore

log = logging.getLogger(__name__)


class JsonlSync:
    """Appends the store's events to JSONL files laid out for ``CommitScheduler``.

    Args:
        folder: the local folder (created).
        repo_id: the dataset repo to push to; None writes the folder only (tests, dry runs).
        every_minutes: the scheduler's commit interval.

    Example:
        >>> store = LabelStore("labels.sqlite", sync=JsonlSync("hub-labels", repo_id="me/xmr-labels"))
    """

    def __init__(
        self, folder: str | os.PathLike, *, repo_id: str | None = None, every_minutes: float = 5
    ) -> None:
        self.folder = Path(folder)
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        (self.folder / "media").mkdir(parents=True, exist_ok=True)
        session = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        session = "".join(c if c.isalnum() or c in "-_" else "_" for c in session)
        self.queries_file = self.folder / "data" / f"queries-{session}.jsonl"
        self.judgements_file = self.folder / "data" / f"judgements-{session}.jsonl"
        self.repo_id = repo_id
        self.scheduler = None
        self._lock: Any = threading.Lock()
        if repo_id:
            from huggingface_hub import CommitScheduler

            self.scheduler = CommitScheduler(
                repo_id=repo_id, repo_type="dataset", folder_path=self.folder, path_in_repo="",
                every=every_minutes, private=True,
            )
            self._lock = self.scheduler.lock  # the scheduler must not upload half a line

    def _append(self, path: Path, row: dict[str, Any]) -> None:
        try:
            with self._lock, open(path, "a", encoding="utf-8") as fh:
                fh.write(jsonl_line(row))
        except OSError as err:  # the database is the source of truth; a failed mirror is only logged
            log.warning("labels hub sync: cannot append to %s: %s", path, err)

    def on_query(self, query: Query) -> None:
        """Log a new query (and copy its media)."""
        row = {"event": "query", "qid": query.qid, "modality": query.modality, "text": query.text,
               "media": None, "source_item_id": query.source_item_id, "created_by": query.created_by,
               "created_at": query.created_at, "logged_at": utc_now()}
        if query.media_path is not None:
            target = self.folder / "media" / query.media_path.name
            if not target.exists():
                with self._lock:
                    shutil.copy2(query.media_path, target)
            row["media"] = f"media/{target.name}"
        self._append(self.queries_file, row)

    def on_judgement(self, judgement: Judgement, query: Query, *, event: str) -> None:
        """Log a grade (``event="judge"``) or its withdrawal (``event="undo"``)."""
        self._append(self.judgements_file, {
            "event": event, "id": judgement.id, "qid": query.qid, "docno": judgement.docno,
            "item_modality": judgement.item_modality, "item_id": judgement.item_id,
            "annotator": judgement.annotator, "grade": judgement.grade, "at": judgement.at,
            "model_fingerprint": judgement.model_fingerprint, "index_version": judgement.index_version,
            "note": judgement.note, "previous_id": judgement.previous_id, "logged_at": utc_now(),
        })


def from_env() -> JsonlSync | None:
    """A :class:`JsonlSync` when ``XMR_LABELS_HUB_REPO`` is set, else None (the default).

    The store never reads the environment itself; whoever builds one from it passes this in:
    ``LabelStore(path, sync=from_env())`` (the app and ``xmr labels`` do).
    """
    repo = os.environ.get("XMR_LABELS_HUB_REPO", "").strip()
    if not repo:
        return None
    from xmr.paths import cache_dir

    folder = os.environ.get("XMR_LABELS_HUB_DIR") or cache_dir() / "labels-hub"
    return JsonlSync(folder, repo_id=repo, every_minutes=float(os.environ.get("XMR_LABELS_HUB_EVERY", "5")))


def read_events(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """Every event of a sync folder, in the order it was logged (queries before their judgements)."""
    folder = Path(folder)
    if not (folder / "data").is_dir():
        raise InputError(f"{folder} is not a labels sync folder (no data/)")
    events = []
    for path in sorted((folder / "data").glob("*.jsonl")):
        for row in read_jsonl(path, skip_invalid=True):  # a crash may have cut the last line off
            if row.get("media"):
                row["media"] = str(folder / row["media"])
            events.append(row)
    events.sort(key=lambda e: (e["event"] != "query", e.get("logged_at", "")))
    return events


def replay(store: LabelStore, folder: str | os.PathLike) -> int:
    """Apply a sync folder's events to a (fresh) store; returns the number of events applied."""
    n = 0
    for e in read_events(folder):
        if e["event"] == "query":
            store.add_query_row(e)
        elif e["event"] == "judge":
            store.record_judgement(query=e["qid"], item_id=e["item_id"], item_modality=e["item_modality"],
                                   grade=e["grade"], annotator=e["annotator"], at=e.get("at"),
                                   model_fingerprint=e.get("model_fingerprint"),
                                   index_version=e.get("index_version"), note=e.get("note"))
        elif e["event"] == "undo":
            store.undo(annotator=e["annotator"], query=e["qid"])
        else:
            continue
        n += 1
    return n
