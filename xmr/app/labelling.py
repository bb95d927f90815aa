"""The Label tab's workflow: annotators grade pooled results, over the retrieval service.

Tasks are plain dicts (``query_id``, ``qid``, ``query_modality``, ``query_text``, ``query_media``,
``item_id``, ``item_modality``, ``best_rank``, ``caption``, ``pool``) so that the page can keep the
current one in its per-visitor state. Grades go to the service's label store at once.

A result given to an annotator is reserved for them (:meth:`LabelStore.reserve_next`): annotators
working at once get different results, and asking again after a page reload gives back the pending
one. The media of an annotator's next few results are rendered ahead, in one background thread,
so that they are on disk when the result is shown; :meth:`Labelling.prepare` pools the demo queries
and renders the first results of every query at start-up.

Example::

    labelling = Labelling(service)
    task = labelling.next_task("ada")
    labelling.grade(task, grade=2, annotator="ada")
    print(labelling.progress("ada"))
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from xmr import MODALITIES
from xmr.app.service import EncodedQuery, RetrievalService, safe_name
from xmr.errors import InputError, XmrError

if TYPE_CHECKING:
    from xmr.labels import LabelStore
    from xmr.labels.schema import Query

__all__ = ["Labelling"]

log = logging.getLogger(__name__)

# Results of an annotator whose media are rendered ahead, after the one on screen.
RENDER_AHEAD = 3
# Renders waiting at most (more are dropped: they are rendered when shown).
RENDER_BACKLOG = 256


class Labelling:
    """Pools, tasks, grades, progress and the human-label evaluation over the service's label store.

    Args:
        service: the loaded model, indexes and manifest, and its label store (``service.labels``;
            without one every method raises :class:`~xmr.errors.XmrError`).
    """

    def __init__(self, service: RetrievalService):
        self.service = service
        self._lock = threading.Lock()
        # one daemon thread renders what is queued: a stopping app does not wait for the backlog
        self._ahead: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._queued: set[tuple[str, str]] = set()  # (item, modality) waiting or rendering
        self._queued_lock = threading.Lock()
        self._renderer: threading.Thread | None = None

    def render_ahead(self, items: Iterable[Any]) -> int:
        """Render the audio and image of these pool items (``item_id`` attributes) in the background,
        once each; returns how many renders were queued."""
        todo = []
        with self._queued_lock:
            for item in items:
                for modality in ("audio", "image"):
                    key = (str(item.item_id), modality)
                    if (key not in self._queued and len(self._queued) < RENDER_BACKLOG
                            and self.service.media_if_ready(*key) is None):
                        self._queued.add(key)
                        todo.append(key)
        for key in todo:
            self._ahead.put(key)
        if todo:
            with self._queued_lock:
                if self._renderer is None:
                    self._renderer = threading.Thread(target=self._render_loop, name="xmr-render-ahead",
                                                      daemon=True)
                    self._renderer.start()
        return len(todo)

    def _render_loop(self) -> None:
        while True:
            self._render(self._ahead.get())

    def _render(self, key: tuple[str, str]) -> None:
        try:
            self.service.media(*key)
        except Exception as err:  # shown empty later; never fatal in the background
            log.info("cannot render the %s of %s ahead: %s", key[1], key[0], err)
        finally:
            with self._queued_lock:
                self._queued.discard(key)

    def prepare(self) -> None:
        """Pool the demo queries and render the first results of every query (run in the background at
        start-up, so that the first annotators find their results ready)."""
        try:
            pool = self.ensure_demo_pool()
            per_query = RENDER_AHEAD * max(1, int(getattr(self.service.config, "label_overlap", 1)))
            firsts = [item for p in self._store().open_items(pool=pool) for item in p[:per_query]]
            self.render_ahead(firsts)
        except Exception as err:  # labelling still works; the first visitor pools instead
            log.warning("cannot prepare the demo labelling pool: %s", err)

    @property
    def available(self) -> bool:
        """Whether the service has a label store to write to."""
        return self.service.labels is not None

    def _store(self) -> LabelStore:
        if self.service.labels is None:
            raise XmrError("labelling is not available: the app has no label store")
        return self.service.labels

    def _run_name(self) -> str:
        """The name of this model's runs in the pools."""
        return f"model-{safe_name(self.service.fingerprint)[:12]}"

    @staticmethod
    def annotator_name(name: str | None) -> str:
        """A cleaned annotator name (``InputError`` when empty or over 64 characters)."""
        name = " ".join(str(name or "").split())
        if not name:
            raise InputError("type your name (annotator) first, or sign in")
        if len(name) > 64:
            raise InputError("an annotator name has at most 64 characters")
        return name

    def targets(self, query_modality: str) -> list[str]:
        """Where the results of a labelling query come from: every other indexed modality."""
        indexed = self.service.targets()
        others = [t for t in indexed if t != query_modality]
        return others or indexed

    def ensure_demo_pool(self, *, n_queries: int = 12, depth: int = 10) -> str:
        """Create (once per checkpoint) a pool of text queries from the test split's content-only
        captions with this model's top ``depth`` results, in the evaluation set ``demo``; returns
        the pool's name."""
        from xmr.labels import make_docno

        service, store = self.service, self._store()
        name = f"demo-{safe_name(self.service.fingerprint)[:12]}"
        if any(p.get("name") == name for p in store.list_pools()):
            return name
        with self._lock:
            if any(p.get("name") == name for p in store.list_pools()):
                return name
            run: dict[str, list[tuple[str, float]]] = {}
            for item_id in service.examples("text", n_queries):
                caps = service.captions(item_id)
                if not caps:
                    continue
                text = caps[-1]  # the content-only caption: no names to match on
                qid = store.add_query(modality="text", text=text, source_item_id=item_id, created_by="xmr")
                q = store.get_query(qid)
                hits = service.search(service.encode_query(text=text), targets=self.targets("text"), k=depth)
                run[q.qid] = [(make_docno(h.modality, h.item_id), h.score) for h in hits]
            if not run:
                raise XmrError("the collection has no captioned test items to make labelling queries from")
            try:
                store.add_pool(name, runs={self._run_name(): run}, depth=depth, eval_set="demo",
                               overlap=int(getattr(service.config, "label_overlap", 1)))
            except XmrError:
                if not any(p.get("name") == name for p in store.list_pools()):
                    raise
        return name

    def label_search(self, state: Mapping[str, Any] | None, *, annotator: str) -> int:
        """Add a visitor's current single-input search as a labelling query whose results are pooled
        for grading (evaluation set ``searches``); returns the query's id."""
        from xmr.labels import make_docno

        store = self._store()
        if not state or not state.get("hits"):
            raise InputError("run a search first, then choose “current search” to grade its results")
        inputs = state.get("inputs") or {}
        given = [m for m in MODALITIES if inputs.get(m)]
        if len(given) != 1:
            raise InputError("only a search with a single input (audio, image or text) can be labelled")
        m = given[0]
        query_id = store.add_query(modality=m, text=inputs[m] if m == "text" else None,
                                   media=None if m == "text" else inputs[m], created_by=annotator)
        q = store.get_query(query_id)
        name = f"search-{q.qid}-{safe_name(self.service.fingerprint)[:12]}"
        if not any(p.get("name") == name for p in store.list_pools()):
            run = {q.qid: [(make_docno(h["modality"], h["item_id"]), float(h["score"]))
                           for h in state["hits"]]}
            try:
                store.add_pool(name, runs={self._run_name(): run},
                               depth=len(state["hits"]), eval_set="searches")
            except XmrError:
                if not any(p.get("name") == name for p in store.list_pools()):
                    raise
        return query_id

    def _task(self, *, query_id: int, item_id: str, item_modality: str, best_rank: int | None,
              pool: str | None) -> dict[str, Any]:
        q = self._store().get_query(query_id)
        service = self.service
        caps = service.captions(item_id) if service.has_item(item_id) else []
        return {"query_id": q.id, "qid": q.qid, "query_modality": q.modality, "query_text": q.text,
                "query_media": str(q.media_path) if q.media_path else None, "item_id": item_id,
                "item_modality": item_modality, "best_rank": best_rank, "caption": caps[0] if caps else "",
                "pool": pool}

    def next_task(self, annotator: str, *, query: int | str | None = None) -> dict[str, Any] | None:
        """The next result for this annotator to grade (from every pool, or from one query's), reserved
        for them (the pending one again if they have one), or ``None`` when there is nothing left;
        the demo pool is created on first use, and the next few results are rendered ahead."""
        store = self._store()
        store.add_annotator(annotator)  # so that progress counts what is left for a newcomer
        if query is None:
            self.ensure_demo_pool()
        items = store.reserve_next(annotator, 1, query=query)
        if not items:
            return None
        self.render_ahead(store.next_items(annotator, 1 + RENDER_AHEAD, query=query)[1:])
        it = items[0]
        return self._task(query_id=it.query_id, item_id=it.item_id, item_modality=it.item_modality,
                          best_rank=it.best_rank, pool=it.pool)

    def grade(self, task: Mapping[str, Any], *, grade: int, annotator: str) -> int:
        """Save one grade at once (with the model and index that produced the result); returns its id."""
        return self._store().record_judgement(
            query=task["query_id"], item_id=task["item_id"], item_modality=task["item_modality"],
            grade=int(grade), annotator=annotator, model_fingerprint=self.service.fingerprint or None,
            index_version=self.service.index_version)

    def undo(self, annotator: str) -> dict[str, Any] | None:
        """Withdraw the annotator's latest grade; returns that result as a task to grade again."""
        res = self._store().undo(annotator=annotator)
        if res is None:
            return None
        j = res.undone
        return self._task(query_id=j.query_id, item_id=j.item_id, item_modality=j.item_modality,
                          best_rank=None, pool=None)

    def progress(self, annotator: str) -> dict[str, int]:
        """``{"judged", "queries", "remaining"}`` of one annotator over all pools."""
        for a in self._store().progress(annotator=annotator).annotators:
            if a.annotator == annotator:
                return {"judged": a.judged, "queries": a.queries, "remaining": a.remaining}
        return {"judged": 0, "queries": 0, "remaining": 0}

    def _stored_query_vector(self, q: Query) -> EncodedQuery:
        if q.modality == "text":
            return self.service.encode_query(text=q.text)
        if q.media_path is None:
            raise XmrError(f"query {q.qid} has no stored media")
        return self.service.encode_query(**{q.modality: str(q.media_path)})

    def human_eval(self, *, k: int = 10) -> list[dict[str, Any]]:
        """The loaded model scored on every human-labelled evaluation set, with agreement figures.

        Returns:
            one dict per set: ``name``, ``n_queries``, ``n_judged_queries``, ``n_judgements``,
            ``mean`` (nDCG@10, MAP, P@10, recall@10, judged@10 as ``xmr.labels.evaluate_run``
            names them) and ``agreement`` (results graded twice or more, Fleiss' κ, Krippendorff's α).
        """
        from xmr.labels import agreement_report, evaluate_run, make_docno

        store = self._store()
        out = []
        for s in store.list_eval_sets():
            row: dict[str, Any] = {"name": s.name, "n_queries": s.n_queries,
                                   "n_judged_queries": s.n_judged_queries,
                                   "n_judgements": s.n_judgements, "mean": {}, "agreement": None}
            qrels = store.qrels(eval_set=s.name)
            if qrels:
                run: dict[str, dict[str, float]] = {}
                for qid in qrels:
                    q = store.get_query(qid)
                    hits = self.service.search(self._stored_query_vector(q), targets=self.targets(q.modality),
                                               k=k)
                    run[qid] = {make_docno(h.modality, h.item_id): h.score for h in hits}
                row["mean"] = evaluate_run(store, run=run, eval_set=s.name).mean
                rep = agreement_report(store, eval_set=s.name)
                row["agreement"] = {"n_items": rep.n_items, "annotators": len(rep.annotators),
                                    "fleiss_kappa": rep.fleiss_kappa,
                                    "krippendorff_alpha": rep.krippendorff_alpha_ordinal}
            out.append(row)
        return out
