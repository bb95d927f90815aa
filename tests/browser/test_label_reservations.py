"""Reservations through the real app: a shown result is the annotator's, also after a page reload."""

from __future__ import annotations

import re
import sqlite3


def shown(out) -> tuple[str, str]:
    return re.search(r"`([^`]+)`", out[0]).group(1), re.search(r"\*\*Result\*\* `([^`]+)`", out[5]).group(1)


def visitor(app_server):
    from gradio_client import Client

    return Client(app_server.url, verbose=False)  # a fresh page: no state from before


def test_a_reload_gives_back_the_pending_result_and_others_get_other_ones(app_server, tiny_demo_env):
    first = shown(visitor(app_server).predict("dora", "pooled queue", api_name="/label_next"))
    again = shown(visitor(app_server).predict("dora", "pooled queue", api_name="/label_next"))
    other = shown(visitor(app_server).predict("emil", "pooled queue", api_name="/label_next"))
    assert again == first
    assert other != first
    with sqlite3.connect(tiny_demo_env["XMR_LABELS_DB"]) as con:
        held = con.execute(
            "SELECT a.name, r.item_id FROM reservations r JOIN annotators a ON a.id = r.annotator_id "
            "WHERE a.name IN ('dora', 'emil') ORDER BY a.name").fetchall()
    assert held == [("dora", first[1]), ("emil", other[1])]
