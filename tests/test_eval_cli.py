

def test_queries_file_shared_by_per_annotator_qrels(tmp_path):
    from xmr.eval.queries import find_queries_file

    shared = tmp_path / "gold.queries.jsonl"
    shared.write_text("{}\n")
    assert find_queries_file(tmp_path / "gold.alice.qrels") == shared
    assert find_queries_file(tmp_path / "gold.qrels") == shared
    assert find_queries_file(tmp_path / "other.bob.qrels") == tmp_path / "other.bob.queries.jsonl"
