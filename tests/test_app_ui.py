"""The app's page without a browser: the missing-assets page, launch options, result and metric text."""

import pytest


def test_missing_assets_page_says_what_to_build(monkeypatch, tmp_path):
    monkeypatch.setenv("XMR_MANIFEST", str(tmp_path / "nope.parquet"))
    monkeypatch.setenv("XMR_CHECKPOINT", str(tmp_path / "no-checkpoint"))
    monkeypatch.setenv("XMR_INDEX", str(tmp_path / "no-index"))
    from xmr.app import build_app, missing_assets

    lines = missing_assets()
    assert len(lines) == 3
    assert any("xmr corpus build" in line for line in lines)
    assert any("xmr train" in line for line in lines)
    demo = build_app()
    texts = [b.value for b in demo.blocks.values() if type(b).__name__ == "Markdown"]
    assert any("demo assets are missing" in t and "xmr index build" in t for t in texts)


def test_launch_options_honour_the_environment(monkeypatch, tmp_path):
    from xmr.app import launch_options

    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    monkeypatch.setenv("XMR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XMR_APP_AUTH", "ada:secret, bob:pw")
    opts = launch_options()
    assert opts["server_name"] == "0.0.0.0" and opts["server_port"] == 7999
    assert opts["max_file_size"] == "25mb"
    assert opts["auth"] == [("ada", "secret"), ("bob", "pw")]
    assert str(tmp_path / "cache") in opts["allowed_paths"]
    monkeypatch.setenv("XMR_APP_AUTH", "no-password")
    with pytest.raises(ValueError, match="XMR_APP_AUTH"):
        launch_options()


def test_result_card_text():
    from xmr.app.tabs.format import hit_markdown

    text = hit_markdown({"rank": 2, "score": 0.8123, "modality": "audio", "item_id": "bach-1",
                         "caption": "a chorale", "details": {"key": "G major"}, "query_offset": 61.5,
                         "track_offset": None})
    for part in ("#2", "0.812", "bach-1", "1:01.5", "key: G major"):
        assert part in text


def test_metric_tables_show_candidates_and_chance():
    from xmr.app.tabs.format import human_markdown, split_markdown

    report = {"split": "test", "directions": {"audio→image": {
        "n_queries": 100, "n_candidates": 1000,
        "metrics": {"R@1": 0.5, "R@5": 0.7, "R@10": 0.8, "MRR": 0.61, "MedR": 1.0, "mAP": 0.6,
                    "chance": {"R@1": 0.001, "MRR": 0.0075}}}}}
    table = split_markdown(report)
    assert "| audio→image | 100 | 1000 | 0.500 |" in table and "0.0010" in table
    assert "No evaluation set yet" in human_markdown([])
    row = human_markdown([{"name": "demo", "n_queries": 3, "n_judged_queries": 1, "n_judgements": 4,
                           "mean": {"ndcg_cut_10": 0.5}, "agreement": None}])
    assert "| demo | 3 | 1 | 4 | 0.500 |" in row


def test_serve_command_is_registered(capsys):
    from xmr.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    assert "--port" in capsys.readouterr().out
