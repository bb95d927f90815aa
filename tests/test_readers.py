"""Dataset readers on small fixture files written here: contents, manifest round trip, malformed rows."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from xmr.data.manifest import read_manifest, write_manifest
from xmr.data.readers import (
    READERS,
    concat_manifests,
    read_audiocaps,
    read_clotho,
    read_coco_captions,
    read_dataset,
    read_karpathy,
)
from xmr.errors import ManifestError


def coco_fixture() -> dict:
    return {
        "info": {"description": "tiny"},
        "images": [
            {"id": 42, "file_name": "000000000042.jpg", "width": 640, "height": 480},
            {"id": 7, "file_name": "000000000007.jpg", "width": 320, "height": 240},
            {"id": 9, "file_name": "000000000009.jpg", "width": 100, "height": 100},
        ],
        "annotations": [
            {"id": 3, "image_id": 42, "caption": "A dog on a skateboard. "},
            {"id": 1, "image_id": 42, "caption": "A small dog rides a board."},
            {"id": 2, "image_id": 7, "caption": "Two cups of coffee."},
        ],
    }


def karpathy_fixture() -> dict:
    def sent(raw):
        return {"raw": raw, "tokens": raw.lower().strip(".").split(), "sentid": 0}

    return {
        "dataset": "flickr30k",
        "images": [
            {"filename": "1000092795.jpg", "imgid": 0, "split": "train", "sentids": [0, 1],
             "sentences": [sent("Two young guys outside."), sent("Two men in a yard.")]},
            {"filename": "10002456.jpg", "imgid": 1, "split": "restval", "sentids": [2],
             "sentences": [{"tokens": ["a", "dog", "runs"]}]},
            {"filename": "1001465944.jpg", "imgid": 2, "split": "test", "sentids": [3],
             "sentences": [sent("A woman walks.")]},
        ],
    }


def write_json(path, data):
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def assert_round_trip(df, tmp_path):
    for suffix in ("csv", "jsonl", "parquet"):
        back = read_manifest(write_manifest(df, tmp_path / "rt" / f"manifest.{suffix}"))
        pd.testing.assert_frame_equal(back[["id", "split", "audio", "image", "caption"]],
                                      df[["id", "split", "audio", "image", "caption"]], check_dtype=False)


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert excinfo.type is ManifestError and "\n" not in msg
    return msg


# --------------------------------------------------------------------------- COCO


def test_coco_captions(tmp_path):
    path = write_json(tmp_path / "captions_val2017.json", coco_fixture())
    df = read_coco_captions(path, image_root=tmp_path / "val2017")
    assert df["id"].tolist() == ["42", "7", "9"]
    assert set(df["split"]) == {"val"}
    # captions ordered by annotation id
    assert df.loc[0, "caption"] == ["A small dog rides a board.", "A dog on a skateboard."]
    assert df.loc[2, "caption"] == []  # an image without captions is still an image item
    assert df.loc[1, "image"] == str(tmp_path / "val2017" / "000000000007.jpg")
    assert df["width"].tolist() == [640, 320, 100]
    assert_round_trip(df, tmp_path)


def test_coco_annotation_for_unknown_image(tmp_path):
    data = coco_fixture()
    data["annotations"].append({"id": 9, "image_id": 999, "caption": "orphan"})
    with pytest.raises(ManifestError) as ei:
        read_coco_captions(write_json(tmp_path / "captions_train2017.json", data))
    assert one_line(ei) == ("captions_train2017.json: annotations row 4, field 'image_id': "
                            "image 999 is not listed in 'images'")


def test_coco_missing_caption(tmp_path):
    data = coco_fixture()
    del data["annotations"][1]["caption"]
    with pytest.raises(ManifestError) as ei:
        read_coco_captions(write_json(tmp_path / "captions_train2017.json", data))
    assert "annotations row 2, field 'caption'" in one_line(ei)


def test_coco_duplicate_image(tmp_path):
    data = coco_fixture()
    data["images"][2]["id"] = 42
    with pytest.raises(ManifestError) as ei:
        read_coco_captions(write_json(tmp_path / "captions_train2017.json", data))
    assert "images row 3, field 'id': duplicate image id 42" in one_line(ei)


def test_coco_invalid_json_names_line(tmp_path):
    path = tmp_path / "captions_train2017.json"
    path.write_text('{\n "images": [\n  {"id": 1,,}\n ]\n}\n')
    with pytest.raises(ManifestError) as ei:
        read_coco_captions(path)
    assert "invalid JSON at line 3" in one_line(ei)


def test_split_needed_when_the_name_does_not_say(tmp_path):
    path = write_json(tmp_path / "captions.json", coco_fixture())
    with pytest.raises(ManifestError) as ei:
        read_coco_captions(path)
    assert "pass split=" in one_line(ei)
    assert set(read_coco_captions(path, split="test")["split"]) == {"test"}


# --------------------------------------------------------------------------- Karpathy


def test_karpathy_flickr(tmp_path):
    path = write_json(tmp_path / "dataset_flickr30k.json", karpathy_fixture())
    df = read_karpathy(path, image_root=tmp_path / "flickr30k-images")
    assert df["id"].tolist() == ["1000092795", "10002456", "1001465944"]
    assert df["split"].tolist() == ["train", "train", "test"]  # restval -> train
    assert df["karpathy_split"].tolist() == ["train", "restval", "test"]
    assert df.loc[0, "caption"] == ["Two young guys outside.", "Two men in a yard."]
    assert df.loc[1, "caption"] == ["a dog runs"]  # tokens when there is no raw text
    assert df.loc[2, "image"] == str(tmp_path / "flickr30k-images" / "1001465944.jpg")
    assert set(df["dataset"]) == {"flickr30k"}
    assert read_karpathy(path, restval="restval")["split"].tolist() == ["train", "restval", "test"]
    assert_round_trip(df, tmp_path)


def test_karpathy_coco_uses_cocoid_and_filepath(tmp_path):
    data = karpathy_fixture()
    data["dataset"] = "coco"
    for i, img in enumerate(data["images"]):
        img["cocoid"] = 1000 + i
        img["filepath"] = "val2014"
    df = read_karpathy(write_json(tmp_path / "dataset_coco.json", data), image_root=tmp_path)
    assert df["id"].tolist() == ["1000", "1001", "1002"]
    assert df.loc[0, "image"] == str(tmp_path / "val2014" / "1000092795.jpg")


def test_karpathy_bad_split(tmp_path):
    data = karpathy_fixture()
    data["images"][2]["split"] = "holdout"
    with pytest.raises(ManifestError) as ei:
        read_karpathy(write_json(tmp_path / "dataset_flickr30k.json", data))
    assert one_line(ei).startswith("dataset_flickr30k.json: images row 3, field 'split': 'holdout'")


def test_karpathy_empty_sentence(tmp_path):
    data = karpathy_fixture()
    data["images"][1]["sentences"] = [{"raw": "  ", "tokens": []}]
    with pytest.raises(ManifestError) as ei:
        read_karpathy(write_json(tmp_path / "dataset_flickr30k.json", data))
    assert "images row 2, field 'sentences': sentence 1" in one_line(ei)


def test_karpathy_duplicate_file(tmp_path):
    data = karpathy_fixture()
    data["images"][2]["filename"] = "1000092795.jpg"
    with pytest.raises(ManifestError) as ei:
        read_karpathy(write_json(tmp_path / "dataset_flickr30k.json", data))
    assert "row 3, column 'id': duplicate id '1000092795'" in one_line(ei)


# --------------------------------------------------------------------------- AudioCaps

AUDIOCAPS = """audiocap_id,youtube_id,start_time,caption
103,--0w1YA1Hm4,30,A vehicle driving as a man speaks
101,--0w1YA1Hm4,30,A man talks while a car passes
200,-1nilez17Dg,0,Rain falls on a roof
"""


def test_audiocaps(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text(AUDIOCAPS)
    df = read_audiocaps(path, audio_root=tmp_path / "audio")
    assert df["id"].tolist() == ["--0w1YA1Hm4_30", "-1nilez17Dg_0"]
    assert set(df["split"]) == {"test"}
    assert df.loc[0, "caption"] == ["A man talks while a car passes", "A vehicle driving as a man speaks"]
    assert df.loc[1, "audio"] == str(tmp_path / "audio" / "-1nilez17Dg_0.wav")
    assert df["start_time"].tolist() == [30, 0]
    custom = read_audiocaps(path, audio_template="Y{youtube_id}.flac")
    assert custom.loc[0, "audio"] == str(tmp_path / "Y--0w1YA1Hm4.flac")
    assert_round_trip(df, tmp_path)


def test_audiocaps_bad_start_time(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(AUDIOCAPS + "300,abc,ten,Birds sing\n")
    with pytest.raises(ManifestError) as ei:
        read_audiocaps(path)
    assert one_line(ei) == "train.csv: row 4, column 'start_time': expected a whole number, got 'ten'"


def test_audiocaps_empty_caption(tmp_path):
    path = tmp_path / "val.csv"
    path.write_text(AUDIOCAPS.replace("Rain falls on a roof", ""))
    with pytest.raises(ManifestError) as ei:
        read_audiocaps(path)
    assert one_line(ei) == "val.csv: row 3, column 'caption': empty"


def test_audiocaps_missing_column(tmp_path):
    path = tmp_path / "val.csv"
    path.write_text("youtube_id,start_time,caption\nabc,0,x\n")
    with pytest.raises(ManifestError) as ei:
        read_audiocaps(path)
    assert "missing column(s) audiocap_id" in one_line(ei)


# --------------------------------------------------------------------------- Clotho

CLOTHO = """file_name,caption_1,caption_2,caption_3,caption_4,caption_5
Distorted AM Radio noise.wav,A radio hisses.,Static from a radio.,Noise crackles.,A radio is tuned.,Hiss.
street 2.wav,Cars pass by.,Traffic on a street.,,Engines rumble.,People walk.
"""
CLOTHO_META = """file_name,keywords,sound_id,sound_link,start_end_samples,manufacturer,license
street 2.wav,street;traffic,1234,https://example.org/1234,,someone,CC BY 3.0
"""


def test_clotho_with_metadata(tmp_path):
    path = tmp_path / "clotho_captions_evaluation.csv"
    path.write_text(CLOTHO)
    (tmp_path / "clotho_metadata_evaluation.csv").write_text(CLOTHO_META)
    meta = tmp_path / "clotho_metadata_evaluation.csv"
    df = read_clotho(path, audio_root=tmp_path / "evaluation", metadata=meta)
    assert df["id"].tolist() == ["Distorted AM Radio noise", "street 2"]
    assert set(df["split"]) == {"test"}
    assert len(df.loc[0, "caption"]) == 5
    assert df.loc[1, "caption"] == ["Cars pass by.", "Traffic on a street.", "Engines rumble.",
                                    "People walk."]  # the empty caption_3 cell is skipped
    assert df.loc[1, "audio"] == str(tmp_path / "evaluation" / "street 2.wav")
    assert df.loc[1, "license"] == "CC BY 3.0" and pd.isna(df.loc[0, "license"])
    assert_round_trip(df, tmp_path)


def test_clotho_windows_1252_file(tmp_path):
    path = tmp_path / "clotho_captions_development.csv"
    path.write_bytes("file_name,caption_1\ncaf\xe9.wav,A spoon in a caf\xe9.\n".encode("cp1252"))
    df = read_clotho(path)
    assert df.loc[0, "caption"] == ["A spoon in a caf\u00e9."] and df.loc[0, "split"] == "train"


def test_clotho_row_without_captions(tmp_path):
    path = tmp_path / "clotho_captions_validation.csv"
    path.write_text(CLOTHO + "quiet.wav,,,,,\n")
    with pytest.raises(ManifestError) as ei:
        read_clotho(path)
    assert one_line(ei).startswith("clotho_captions_validation.csv: row 3, column 'caption_1': no caption")


def test_clotho_repeated_file(tmp_path):
    path = tmp_path / "clotho_captions_validation.csv"
    path.write_text(CLOTHO + "street 2.wav,again,,,,\n")
    with pytest.raises(ManifestError) as ei:
        read_clotho(path)
    assert "row 3, column 'file_name': 'street 2.wav' repeats row 2" in one_line(ei)


def test_clotho_without_caption_columns(tmp_path):
    path = tmp_path / "clotho_captions_validation.csv"
    path.write_text("file_name,text\na.wav,x\n")
    with pytest.raises(ManifestError) as ei:
        read_clotho(path)
    assert "no caption_1" in one_line(ei)


# --------------------------------------------------------------------------- registry


def test_registry_and_concat(tmp_path):
    assert set(READERS) == {"coco", "karpathy", "audiocaps", "clotho"}
    for name in ("development", "evaluation"):
        (tmp_path / f"clotho_captions_{name}.csv").write_text(CLOTHO.replace("street 2", f"street {name}"))
    names = ("development", "evaluation")
    frames = [read_dataset("clotho", tmp_path / f"clotho_captions_{n}.csv") for n in names]
    with pytest.raises(ManifestError) as ei:
        concat_manifests(frames)  # the radio file is in both: ids collide
    assert "row 3, column 'id': duplicate id 'Distorted AM Radio noise'" in one_line(ei)
    assert len(concat_manifests([frames[0], frames[1].iloc[1:]])) == 3
    with pytest.raises(ManifestError) as ei:
        read_dataset("msrvtt", tmp_path / "x.json")
    assert "unknown dataset format 'msrvtt'" in one_line(ei)


def test_missing_dataset_file(tmp_path):
    with pytest.raises(ManifestError) as ei:
        read_dataset("audiocaps", tmp_path / "train.csv")
    assert "dataset file not found" in one_line(ei)
