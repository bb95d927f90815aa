

def test_queries_file_shared_by_per_annotator_qrels(tmp_path):
    from xmr.eval.evaluate import queries_file_for

    shared = tmp_path / "gold.queries.jsonl"
    shared.write_text("{}\n")
    assert queries_file_for(tmp_path / "gold.alice.qrels") == shared
    assert queries_file_for(tmp_path / "gold.qrels") == shared
    assert queries_file_for(tmp_path / "other.bob.qrels") == tmp_path / "other.bob.queries.jsonl"
