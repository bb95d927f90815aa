"""The queries file (NAME.queries.jsonl) and the JSONL reader under it: one format, one validation."""

import pytest

from xmr.data.jsonl import read_jsonl, write_jsonl
from xmr.errors import InputError
from xmr.eval.queries import find_queries_file, queries_path, read_queries, write_queries


def test_round_trip_copies_media_and_reads_it_back_absolute(tmp_path):
    upload = tmp_path / "uploads" / "abc.png"
    upload.parent.mkdir()
    upload.write_bytes(b"\x89PNG fake")
    out = queries_path(tmp_path / "out" / "dev.qrels")
    assert out == tmp_path / "out" / "dev.queries.jsonl"
    rows = [{"qid": "q1", "modality": "text", "text": "a waltz", "source_item_id": None},
            {"qid": "q2", "modality": "image", "media": upload, "source_item_id": "s1"}]
    write_queries(rows, out)
    raw = read_jsonl(out)
    assert raw[1]["media"] == "dev.media/abc.png"  # relative to the file, copied beside it
    assert (tmp_path / "out" / "dev.media" / "abc.png").read_bytes() == upload.read_bytes()
    back = read_queries(out)
    assert back[0] == {"qid": "q1", "modality": "text", "text": "a waltz", "source_item_id": None}
    assert back[1]["media"] == str((tmp_path / "out" / "dev.media" / "abc.png").resolve())


def test_one_validation(tmp_path):
    path = tmp_path / "x.queries.jsonl"
    with pytest.raises(InputError, match="not found"):
        read_queries(path)
    path.write_text('{"qid": "q1", "modality": "smell"}\n')
    with pytest.raises(InputError, match="row 1: a query needs a qid and a modality"):
        read_queries(path)
    path.write_text('{"qid": "q1", "modality": "audio", "path": "a.wav"}\n\n[1]\n')
    with pytest.raises(InputError, match=r"line 3 \(row 2\): expected a JSON object"):
        read_queries(path)
    path.write_text('{"qid": "q1", "modality": "audio", "path": "a.wav"}\n')
    assert read_queries(path)[0]["media"] == str((tmp_path / "a.wav").resolve())  # older spelling


def test_locator_strips_dotted_suffixes(tmp_path):
    shared = tmp_path / "gold.queries.jsonl"
    assert find_queries_file(tmp_path / "gold.alice.qrels") == tmp_path / "gold.alice.queries.jsonl"
    shared.write_text("")
    assert find_queries_file(tmp_path / "gold.alice.qrels") == shared
    assert queries_path(tmp_path / "gold.alice.qrels") == tmp_path / "gold.alice.queries.jsonl"


def test_jsonl_reader_skips_a_cut_off_line_when_asked(tmp_path):
    path = write_jsonl([{"a": 1}, {"b": "é"}], tmp_path / "log.jsonl")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"c": ')  # a crash mid-line
    assert read_jsonl(path, skip_invalid=True) == [{"a": 1}, {"b": "é"}]
    with pytest.raises(InputError, match=r"log.jsonl: line 3 \(row 3\): invalid JSON"):
        read_jsonl(path)
