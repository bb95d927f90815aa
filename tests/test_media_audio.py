"""Audio decoding: every accepted input form, and one test per bad-input case (one-line InputError)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from xmr.errors import InputError
from xmr.media.audio import decode_audio, load_audio, probe_audio, resample

SR = 44100
FORMATS = [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS"),
           ("mp3", "MP3", "MPEG_LAYER_III")]


def tone(freq=440.0, seconds=1.0, sr=SR, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path, data, sr=SR, fmt="WAV", subtype="PCM_16"):
    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt}")
    sf.write(str(path), data, sr, format=fmt, subtype=subtype)
    return path


def dominant_hz(wave, sr):
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.argmax(spectrum) * sr / len(wave)


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert excinfo.type is InputError
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


# --------------------------------------------------------------------------- accepted inputs


@pytest.mark.parametrize("ext,fmt,subtype", FORMATS)
def test_each_container_decodes_to_mono_16k(tmp_path, ext, fmt, subtype):
    stereo = np.stack([tone(440), tone(440) * 0.5], axis=1)
    path = write(tmp_path / f"a.{ext}", stereo, fmt=fmt, subtype=subtype)
    wave = load_audio(path, sample_rate=16000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 16000) <= 0.02 * 16000  # MP3 encoders may pad a few ms
    assert abs(dominant_hz(wave, 16000) - 440) < 3
    assert 0.3 < np.max(np.abs(wave)) < 0.45  # mean of 0.5 and 0.25 amplitude channels
    assert probe_audio(path).format in (fmt, "WAV")


def test_bytes_and_file_objects_decode_like_paths(tmp_path):
    path = write(tmp_path / "a.flac", tone(), fmt="FLAC")
    from_path = load_audio(path)
    np.testing.assert_array_equal(load_audio(path.read_bytes()), from_path)
    with open(path, "rb") as fh:
        np.testing.assert_array_equal(load_audio(fh), from_path)
    np.testing.assert_array_equal(load_audio(str(path)), from_path)


def test_resample_matches_analytic_tone():
    # A 440 Hz tone resampled 44.1 kHz -> 16 kHz must equal the tone sampled at 16 kHz (away from edges).
    out = resample(tone(440, 1.0, SR), orig_rate=SR, new_rate=16000)
    ref = tone(440, 1.0, 16000)
    assert out.shape == ref.shape
    assert np.max(np.abs(out[500:-500] - ref[500:-500])) < 2e-3


def test_native_rate_is_untouched(tmp_path):
    data = tone(1000, 0.5, 16000)
    path = write(tmp_path / "x.wav", data, sr=16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path, sample_rate=16000), data)


@pytest.mark.parametrize(
    "dtype,full_scale,offset",
    [(np.int16, 32768, 0), (np.int32, 2**31, 0), (np.int8, 128, 0), (np.uint8, 128, 128),
     (np.float32, 1, 0), (np.float64, 1, 0), (np.float16, 1, 0)],
)
def test_gradio_tuple_any_dtype(dtype, full_scale, offset):
    ref = tone(440, 0.25, 16000)
    arr = (ref * (full_scale - 1) + offset).astype(dtype) if full_scale > 1 else ref.astype(dtype)
    wave = load_audio((16000, arr), sample_rate=16000)
    assert wave.dtype == np.float32
    tol = 2.0 / full_scale if full_scale > 1 else 1e-3
    assert np.max(np.abs(wave - ref)) < tol


def test_gradio_tuple_multichannel_is_averaged_both_layouts():
    left, right = tone(440, 0.25, 16000), tone(660, 0.25, 16000)
    expected = (left + right) / 2
    np.testing.assert_allclose(load_audio((16000, np.stack([left, right], 1))), expected, atol=1e-6)
    np.testing.assert_allclose(load_audio((16000, np.stack([left, right], 0))), expected, atol=1e-6)


def test_gradio_tuple_is_resampled():
    wave = load_audio((SR, tone(440, 1.0, SR)), sample_rate=16000)
    assert len(wave) == 16000 and abs(dominant_hz(wave, 16000) - 440) < 3


def test_decode_audio_keeps_channels_and_rate(tmp_path):
    path = write(tmp_path / "s.wav", np.stack([tone(), tone()], 1))
    data, rate = decode_audio(path)
    assert data.shape == (SR, 2) and rate == SR and data.dtype == np.float32


def test_cap_is_configurable(tmp_path):
    path = write(tmp_path / "three.wav", tone(seconds=3.0))
    assert len(load_audio(path, max_seconds=None)) == 48000
    assert len(load_audio(path, max_seconds=3.0)) == 48000


# --------------------------------------------------------------------------- bad inputs


def test_zero_length_bytes():
    with pytest.raises(InputError) as ei:
        load_audio(b"")
    assert "empty" in one_line_error(ei)


def test_zero_length_file(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(InputError) as ei:
        load_audio(tmp_path / "empty.wav")
    assert "empty" in one_line_error(ei)


def test_zero_frames_wav(tmp_path):
    path = write(tmp_path / "noframes.wav", np.zeros((0,), np.float32))
    with pytest.raises(InputError) as ei:
        load_audio(path)
    assert "zero length" in one_line_error(ei)


def test_zero_length_array():
    with pytest.raises(InputError) as ei:
        load_audio((16000, np.zeros(0, np.int16)))
    assert "zero length" in one_line_error(ei)


def test_undecodable_bytes():
    with pytest.raises(InputError) as ei:
        load_audio(np.random.default_rng(0).bytes(4096))
    assert "cannot decode" in one_line_error(ei)


def test_undecodable_text_file_with_audio_suffix(tmp_path):
    path = tmp_path / "notes.mp3"
    path.write_text("this is not audio\nat all\n")
    with pytest.raises(InputError) as ei:
        load_audio(path)
    assert "cannot decode notes.mp3" in one_line_error(ei)


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as ei:
        load_audio(tmp_path / "nope.wav")
    assert "not found" in one_line_error(ei)


def test_unsupported_input_type():
    with pytest.raises(InputError) as ei:
        load_audio(12345)
    assert "unsupported audio input of type int" in one_line_error(ei)


def test_unsupported_container(tmp_path):
    path = write(tmp_path / "x.au", tone(), fmt="AU", subtype="PCM_16")
    with pytest.raises(InputError) as ei:
        load_audio(path)
    assert "unsupported audio format AU" in one_line_error(ei)


def test_unsupported_sample_dtype():
    with pytest.raises(InputError) as ei:
        load_audio((16000, np.ones(100, np.complex64)))
    assert "unsupported audio sample type" in one_line_error(ei)


def test_unsupported_array_shape():
    with pytest.raises(InputError) as ei:
        load_audio((16000, np.ones((4, 100, 2), np.float32)))
    assert "1-D or 2-D" in one_line_error(ei)


def test_bad_sample_rate_in_tuple():
    with pytest.raises(InputError) as ei:
        load_audio((-5, tone()))
    assert "sample rate" in one_line_error(ei)


def test_over_cap_file_is_refused_from_header(tmp_path, monkeypatch):
    path = write(tmp_path / "long.flac", tone(seconds=3.0), fmt="FLAC")

    def no_decoding(*args, **kwargs):
        raise AssertionError("a file over the cap must not be decoded")

    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    with pytest.raises(InputError) as ei:
        load_audio(path, max_seconds=2.0)
    msg = one_line_error(ei)
    assert "3.0 s long" in msg and "limit is 2 s" in msg


def test_over_cap_default_is_ten_minutes():
    arr = np.zeros(16000 * 601, np.int16)  # 601 s
    with pytest.raises(InputError) as ei:
        load_audio((16000, arr))
    assert "limit is 600 s" in one_line_error(ei)


def test_all_silent_file(tmp_path):
    path = write(tmp_path / "silence.wav", np.zeros(SR, np.float32))
    with pytest.raises(InputError) as ei:
        load_audio(path)
    assert "silent" in one_line_error(ei)


def test_all_silent_array():
    with pytest.raises(InputError) as ei:
        load_audio((16000, np.zeros((16000, 2), np.int16)))
    assert "silent" in one_line_error(ei)


def test_channels_cancelling_to_silence():
    x = tone(440, 0.5, 16000)
    with pytest.raises(InputError) as ei:
        load_audio((16000, np.stack([x, -x], 1)))
    assert "cancel" in one_line_error(ei)


def test_non_finite_samples():
    x = tone(440, 0.5, 16000)
    x[100] = np.nan
    with pytest.raises(InputError) as ei:
        load_audio((16000, x))
    assert "NaN" in one_line_error(ei)


def test_truncated_flac(tmp_path):
    buf = io.BytesIO()
    sf.write(buf, tone(), SR, format="FLAC")
    path = tmp_path / "cut.flac"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # header survives, frames are cut
    with pytest.raises(InputError) as ei:
        load_audio(path)
    msg = one_line_error(ei)
    assert msg.startswith("cannot decode cut.flac") and "damaged" in msg


def test_int64_from_python_lists_is_scaled_by_its_range():
    ref = tone(440, 0.25, 16000)
    as_list = np.array([int(v) for v in np.round(ref * 32767)])  # int64, 16-bit values
    assert as_list.dtype == np.int64
    assert np.max(np.abs(load_audio((16000, as_list)) - ref)) < 1e-4


def test_swapped_tuple_order_is_an_error():
    with pytest.raises(InputError) as ei:
        load_audio((tone(), SR))
    assert "sample rate must be a number" in one_line_error(ei)


# --------------------------------------------------------------------------- exact messages of uploads
# What a visitor sees for each upload case: the whole one-line message, the file named by its own
# name and never by the folder it was uploaded to.


def wav_bytes(seconds: float, sr: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(seconds=seconds, sr=sr), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def flac_bytes(seconds: float, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(seconds=seconds, sr=sr), sr, format="FLAC")
    return buf.getvalue()


UPLOADS = {  # file name -> (content, exact message)
    "empty.wav": (b"", "empty.wav is empty (0 bytes)"),
    "id3only.mp3": (b"ID3\x03\x00\x00\x00\x00\x00\x10" + b"\x00" * 16,
                    "cannot decode id3only.mp3 as audio (Format not recognised); use WAV, FLAC, OGG or MP3"),
    "notes.mp3": (b"this is not audio\nat all\n",
                  "cannot decode notes.mp3 as audio (Format not recognised); use WAV, FLAC, OGG or MP3"),
    "header says 10 s.wav": (wav_bytes(10)[: 44 + 96],
                             "header says 10 s.wav is truncated: its header promises 10.0 s of audio but the "
                             "file holds 3 ms; upload the whole file"),
    "short.wav": (wav_bytes(0.2),
                  "short.wav is 200 ms long, too short to search with; use a clip of at least 1 s"),
    "silence.wav": (wav_bytes(0.0)[:40] + (32000).to_bytes(4, "little") + b"\x00" * 32000,  # 1 s of zeros
                    "silence.wav is silent (peak amplitude 0); record or upload audio with sound"),
    "cut.flac": (flac_bytes(1.0)[: len(flac_bytes(1.0)) // 2],
                 "cannot decode cut.flac (Error : flac decoder lost sync); the file may be damaged"),
    "long.flac": (flac_bytes(3.0), "long.flac is 3.0 s long; the limit is 2 s, trim it or raise max_seconds"),
}


@pytest.mark.parametrize("name", sorted(UPLOADS))
def test_upload_messages_are_exact_and_name_the_file_only(tmp_path, name):
    content, expected = UPLOADS[name]
    folder = tmp_path / "server upload folder" / "7f3a9c"
    folder.mkdir(parents=True)
    (folder / name).write_bytes(content)
    with pytest.raises(InputError) as ei:
        load_audio(folder / name, max_seconds=2.0, min_seconds=1.0)
    msg = one_line_error(ei)
    assert msg == expected
    assert str(tmp_path) not in msg and "7f3a9c" not in msg


def test_unsupported_container_and_missing_file_messages_are_exact(tmp_path):
    folder = tmp_path / "uploads"
    path = write(folder.mkdir() or folder / "x.au", tone(), fmt="AU", subtype="PCM_16")
    with pytest.raises(InputError) as ei:
        load_audio(path)
    assert one_line_error(ei) == "unsupported audio format AU in x.au; use WAV, FLAC, OGG or MP3"
    with pytest.raises(InputError) as ei:
        load_audio(folder / "nope.wav")
    assert one_line_error(ei) == "audio file not found: nope.wav"


def test_a_truncated_file_that_holds_enough_is_kept_with_a_note(tmp_path):
    path = tmp_path / "cut.wav"
    path.write_bytes(wav_bytes(10)[: 44 + 2 * 16000 * 6])  # 6 of the 10 s its header promises
    notes: list[str] = []
    wave = load_audio(path, sample_rate=16000, min_seconds=1.0, notes=notes)
    assert wave.shape == (96000,)
    assert notes == ["cut.wav is truncated: its header promises 10.0 s of audio but the file holds 6.0 s, "
                     "searched with those 6.0 s"]


def test_a_whole_file_gets_no_note_and_no_minimum_by_default(tmp_path):
    path = tmp_path / "whole.wav"
    path.write_bytes(wav_bytes(0.3))
    notes: list[str] = []
    assert load_audio(path, sample_rate=16000, notes=notes).shape == (4800,)
    assert notes == []


def test_a_long_libsndfile_reason_is_kept_whole():
    from xmr.media._common import decoder_reason

    reason = "Error opening '/srv/uploads/ab12/take 1.mp3': " + "x" * 400 + "."
    assert decoder_reason(RuntimeError(reason), "/srv/uploads/ab12/take 1.mp3") == "x" * 400
