"""The app's API through ``gradio_client`` against the real app (a subprocess on localhost)."""

import pytest

from browser.tiny_demo import labels_rows


@pytest.fixture(scope="module")
def client(app_server):
    from gradio_client import Client

    return Client(app_server.url, verbose=False)


@pytest.fixture(scope="module")
def media(demo_media):
    return demo_media


def search(client, *, audio=None, image=None, text="", weights=(1.0, 1.0, 1.0), targets=("audio", "image"),
           k=5):
    from gradio_client import handle_file

    return client.predict(handle_file(audio) if audio else None, handle_file(image) if image else None, text,
                          *weights, list(targets), k, api_name="/search")


def test_text_search_returns_ranked_results(client):
    results, status = search(client, text="a slow chorale for organ", k=5)
    assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert len({r["item_id"] for r in results}) == 5
    assert all(r["caption"] and r["modality"] in ("audio", "image") for r in results)
    assert "5 results" in status


def test_audio_upload_finds_its_own_item(client, media, demo_items):
    results, _ = search(client, audio=media("audio", demo_items[3]), targets=("audio",), k=3)
    assert results[0]["item_id"] == demo_items[3]
    assert results[0]["score"] == pytest.approx(1.0, abs=1e-3)  # the same track vector as indexed


def test_image_upload_finds_its_own_item(client, media, demo_items):
    results, _ = search(client, image=media("image", demo_items[4]), targets=("image",), k=3)
    assert results[0]["item_id"] == demo_items[4]
    assert results[0]["score"] == pytest.approx(1.0, abs=1e-3)


def test_fused_query_reports_its_inputs(client, media, demo_items):
    results, status = search(client, image=media("image", demo_items[6]), text="a chorale for piano",
                             weights=(1.0, 1.0, 0.5), targets=("audio", "image", "text"), k=4)
    assert "image (1) + text (0.5)" in status and len(results) == 4


def test_bad_inputs_are_errors_and_the_app_keeps_serving(client, tmp_path, app_server):
    from gradio_client.exceptions import AppError

    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt this is not audio")
    with pytest.raises(AppError, match="cannot decode|damaged|not.*audio"):
        search(client, audio=str(corrupt))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(AppError, match="empty|cannot"):
        search(client, image=str(empty))
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    with pytest.raises(AppError, match="image|cannot|unsupported"):
        search(client, image=str(notes))
    with pytest.raises(AppError, match="query is empty"):
        search(client, text="   ")
    with pytest.raises(AppError, match="target modality"):
        search(client, text="a reel", targets=())
    assert app_server.alive()
    results, _ = search(client, text="a lively reel for fiddle", k=3)
    assert len(results) == 3


def test_label_endpoints_save_undo_and_progress(client, tiny_demo_env):
    db = tiny_demo_env["XMR_LABELS_DB"]
    out = client.predict("carol", "pooled queue", api_name="/label_next")
    assert "Query" in out[0] and "carol" in out[-1]
    client.predict("pooled queue", api_name="/grade_2")
    out = client.predict("pooled queue", api_name="/grade_0")
    rows = labels_rows(db, "carol")
    assert [g for _, g in rows] == [2, 0]
    assert "2 graded" in out[-1]
    out = client.predict(api_name="/label_undo")
    assert [g for _, g in labels_rows(db, "carol")] == [2]
    assert rows[1][0] in out[5]  # the undone result is shown again to be re-graded


def test_grading_without_a_task_is_an_error(tiny_demo_env, app_server):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    fresh = Client(app_server.url, verbose=False)  # a new visitor: no annotator, no task
    with pytest.raises(AppError, match="Next"):
        fresh.predict("pooled queue", api_name="/grade_3")
    with pytest.raises(AppError, match="name"):
        fresh.predict("", "pooled queue", api_name="/label_next")


def test_explore_and_evaluate_endpoints(client):
    search(client, text="a waltz", k=3)
    fig, info = client.predict("2-D", "genre", 500, True, api_name="/explore")
    assert "explained variance" in info and "current query" in info
    table, *_ = client.predict("", api_name="/evaluate")
    assert "audio→image" in table and "MRR" in table


def test_label_the_current_audio_search(client, media, demo_items, tiny_demo_env):
    """An uploaded clip becomes a stored labelling query whose results are pooled for grading."""
    import sqlite3

    results, _ = search(client, audio=media("audio", demo_items[5]), targets=("image",), k=3)
    out = client.predict("erin", "current search", api_name="/label_next")
    assert "(audio)" in out[0]
    shown = [r["item_id"] for r in results]
    assert any(i in out[5] for i in shown)
    client.predict("current search", api_name="/grade_3")
    rows = labels_rows(tiny_demo_env["XMR_LABELS_DB"], "erin")
    assert len(rows) == 1 and rows[0][0] in shown and rows[0][1] == 3
    con = sqlite3.connect(tiny_demo_env["XMR_LABELS_DB"])
    try:
        modality, media_path = con.execute(
            "SELECT q.modality, q.media_path FROM queries q JOIN judgements j ON j.query_id = q.id "
            "JOIN annotators a ON a.id = j.annotator_id WHERE a.name = 'erin'").fetchone()
    finally:
        con.close()
    assert modality == "audio" and media_path  # a copy of the upload, kept by the label store
