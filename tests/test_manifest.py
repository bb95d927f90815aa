"""Manifest schema: round trips through CSV/JSONL/Parquet, path resolution, and one test per bad row."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from xmr.data.manifest import read_manifest, validate_manifest, write_manifest
from xmr.errors import ManifestError

FORMATS = ["csv", "jsonl", "parquet"]


def sample() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["a", "b", "007"],
        "split": ["train", "test", "val"],
        "audio": ["audio/a.flac", None, "/elsewhere/x.wav"],
        "image": [None, "image/b.png", None],
        "caption": [["a chorale for organ", "four voices, G major"], ["une gigue — ré mineur"], []],
        "composer": ["Bach", None, "Anon"],
        "year": [1724, 1801, 1900],
    })


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert excinfo.type is ManifestError and "\n" not in msg
    return msg


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_each_format(tmp_path, fmt):
    path = write_manifest(validate_manifest(sample(), base_dir=tmp_path), tmp_path / f"manifest.{fmt}")
    df = read_manifest(path)
    assert list(df.columns) == ["id", "split", "audio", "image", "caption", "composer", "year"]
    assert df["id"].tolist() == ["a", "b", "007"]
    assert df["audio"].tolist() == [str(tmp_path / "audio/a.flac"), None, "/elsewhere/x.wav"]
    assert df["image"].tolist() == [None, str(tmp_path / "image/b.png"), None]
    assert df["caption"].tolist() == sample()["caption"].tolist()
    assert df["year"].tolist() == [1724, 1801, 1900]
    assert df.loc[0, "composer"] == "Bach" and pd.isna(df.loc[1, "composer"])
    assert df.attrs["manifest_dir"] == str(tmp_path.resolve())
    # Written again, it is the same file: paths inside the folder were stored relative.
    again = write_manifest(df, tmp_path / f"again.{fmt}")
    pd.testing.assert_frame_equal(read_manifest(again), df, check_dtype=False)


@pytest.mark.parametrize("fmt", FORMATS)
def test_media_paths_stored_relative_follow_the_folder(tmp_path, fmt):
    src = tmp_path / "one"
    src.mkdir()
    write_manifest(validate_manifest(sample(), base_dir=src), src / f"m.{fmt}")
    shutil.copytree(src, tmp_path / "two")
    df = read_manifest(tmp_path / "two" / f"m.{fmt}")
    assert df.loc[0, "audio"] == str(tmp_path / "two" / "audio" / "a.flac")
    assert df.loc[2, "audio"] == "/elsewhere/x.wav"  # outside the folder: left absolute


def test_csv_cells_as_users_write_them(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(
        "\ufeffid,split,audio,caption,rating\n"
        'NA,train,clips/1.wav,"[""first"", ""second""]",3\n'
        "0042,test,clips/2.wav,just one caption,\n"
        "x,test,,  padded caption  ,5\n",
        encoding="utf-8",
    )
    df = read_manifest(path)
    assert df["id"].tolist() == ["NA", "0042", "x"]  # 'NA' is an id, leading zeros kept
    assert df["caption"].tolist() == [["first", "second"], ["just one caption"], ["padded caption"]]
    assert df["image"].tolist() == [None, None, None]  # absent column added
    assert df.loc[2, "audio"] is None
    assert df.loc[0, "audio"] == str(tmp_path / "clips" / "1.wav")


def test_read_without_resolving(tmp_path):
    write_manifest(validate_manifest(sample(), base_dir=tmp_path), tmp_path / "m.jsonl")
    assert read_manifest(tmp_path / "m.jsonl", resolve_paths=False).loc[0, "audio"] == "audio/a.flac"


def test_parquet_caption_is_a_list_column(tmp_path):
    import pyarrow.parquet as pq

    write_manifest(sample(), tmp_path / "m.parquet")
    schema = pq.read_schema(tmp_path / "m.parquet")
    assert str(schema.field("caption").type) in ("list<element: string>", "list<item: string>")


def test_validate_does_not_change_its_input():
    df = sample()
    before = df.copy()
    validate_manifest(df, base_dir="/base")
    pd.testing.assert_frame_equal(df, before)


def test_write_refuses_an_invalid_frame(tmp_path):
    bad = sample()
    bad.loc[1, "id"] = "a"
    with pytest.raises(ManifestError):
        write_manifest(bad, tmp_path / "m.csv")
    assert not list(tmp_path.iterdir())  # nothing half-written


# --------------------------------------------------------------------------- bad manifests


def write_csv(tmp_path, text: str):
    path = tmp_path / "m.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_required_column(tmp_path):
    with pytest.raises(ManifestError) as ei:
        read_manifest(write_csv(tmp_path, "id,caption\na,hello\n"))
    assert "missing required column 'split'" in one_line(ei)


def test_no_modality_column(tmp_path):
    with pytest.raises(ManifestError) as ei:
        read_manifest(write_csv(tmp_path, "id,split\na,train\n"))
    assert "'audio', 'image', 'caption'" in one_line(ei)


def test_missing_id_names_row(tmp_path):
    with pytest.raises(ManifestError) as ei:
        read_manifest(write_csv(tmp_path, "id,split,caption\na,train,x\n,train,y\n"))
    assert one_line(ei) == "m.csv: row 2, column 'id': missing id"


def test_duplicate_id_names_both_rows(tmp_path):
    with pytest.raises(ManifestError) as ei:
        read_manifest(write_csv(tmp_path, "id,split,caption\na,train,x\nb,train,y\na,test,z\n"))
    assert one_line(ei) == "m.csv: row 3, column 'id': duplicate id 'a' (first in row 1)"


def test_missing_split_names_row(tmp_path):
    with pytest.raises(ManifestError) as ei:
        read_manifest(write_csv(tmp_path, "id,split,caption\na,train,x\nb,,y\n"))
    assert one_line(ei) == "m.csv: row 2, column 'split': missing split"


def test_malformed_caption_json_names_row(tmp_path):
    with pytest.raises(ManifestError) as ei:
        read_manifest(write_csv(tmp_path, 'id,split,caption\na,train,x\nb,train,"[""unclosed"""\n'))
    msg = one_line(ei)
    assert msg.startswith("m.csv: row 2, column 'caption': not a valid JSON list")


def test_empty_caption_in_list(tmp_path):
    with pytest.raises(ManifestError) as ei:
        read_manifest(write_csv(tmp_path, 'id,split,caption\na,train,"[""ok"", ""  ""]"\n'))
    assert one_line(ei) == "m.csv: row 1, column 'caption': caption 2 is empty"


def test_row_without_any_modality(tmp_path):
    with pytest.raises(ManifestError) as ei:
        read_manifest(write_csv(tmp_path, "id,split,audio,caption\na,train,a.wav,\nb,train,,\n"))
    assert "row 2: no audio, image or caption" in one_line(ei)


def test_jsonl_caption_of_wrong_type(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a", "split": "train", "caption": ["x"]}\n'
                    '{"id": "b", "split": "train", "caption": ["y", 3]}\n')
    with pytest.raises(ManifestError) as ei:
        read_manifest(path)
    assert one_line(ei) == "m.jsonl: row 2, column 'caption': caption 2 is a int, not a string"


def test_jsonl_media_path_of_wrong_type(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a", "split": "train", "image": 17}\n')
    with pytest.raises(ManifestError) as ei:
        read_manifest(path)
    assert one_line(ei) == "m.jsonl: row 1, column 'image': expected a file path, got int"


def test_jsonl_invalid_line_names_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a", "split": "train", "caption": "x"}\n\n{"id": "b", "split": \n')
    with pytest.raises(ManifestError) as ei:
        read_manifest(path)
    assert one_line(ei).startswith("m.jsonl: line 3 (row 2): invalid JSON")


def test_jsonl_line_not_an_object(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('["a", "train"]\n')
    with pytest.raises(ManifestError) as ei:
        read_manifest(path)
    assert "line 1 (row 1): expected a JSON object" in one_line(ei)


def test_ragged_csv(tmp_path):
    with pytest.raises(ManifestError) as ei:
        read_manifest(write_csv(tmp_path, "id,split,caption\na,train,x\nb,train,y,extra,more\n"))
    assert "cannot parse CSV" in one_line(ei) and "line 3" in one_line(ei)


def test_not_utf8_csv(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes("id,split,caption\na,train,caf\xe9\n".encode("latin-1"))
    with pytest.raises(ManifestError) as ei:
        read_manifest(path)
    assert "not UTF-8" in one_line(ei)


def test_empty_csv(tmp_path):
    with pytest.raises(ManifestError) as ei:
        read_manifest(write_csv(tmp_path, ""))
    assert "empty" in one_line(ei)


def test_damaged_parquet(tmp_path):
    path = tmp_path / "m.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(ManifestError) as ei:
        read_manifest(path)
    assert "cannot read Parquet" in one_line(ei)


def test_unknown_suffix(tmp_path):
    with pytest.raises(ManifestError) as ei:
        read_manifest(tmp_path / "m.xlsx")
    assert "unknown manifest format '.xlsx'" in one_line(ei)


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError) as ei:
        read_manifest(tmp_path / "nope.csv")
    assert "manifest not found" in one_line(ei)


def test_check_files_names_row_and_column(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"x")
    df = pd.DataFrame({"id": ["a", "b"], "split": ["train"] * 2, "audio": ["a.wav", "b.wav"]})
    validate_manifest(df.iloc[:1], base_dir=tmp_path, check_files=True)
    with pytest.raises(ManifestError) as ei:
        validate_manifest(df, base_dir=tmp_path, check_files=True, source="m.csv")
    assert one_line(ei).startswith("m.csv: row 2, column 'audio': file not found")


def test_json_metadata_survives_csv_as_text(tmp_path):
    df = pd.DataFrame({"id": ["a"], "split": ["train"], "caption": [["x"]], "tags": [["organ", "chorale"]]})
    write_manifest(df, tmp_path / "m.csv")
    back = read_manifest(tmp_path / "m.csv")
    assert json.loads(back.loc[0, "tags"]) == ["organ", "chorale"]


def test_csv_caption_starting_with_a_bracket_is_plain_text(tmp_path):
    df = read_manifest(write_csv(tmp_path, 'id,split,audio,caption\na,train,,[live] take two\n'
                                           'b,train,b.wav,[]\nc,train,,"[ ""x"" ]"\n'))
    assert df["caption"].tolist() == [["[live] take two"], [], ["x"]]
