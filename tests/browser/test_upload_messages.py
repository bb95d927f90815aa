"""What a visitor reads for each bad or odd upload, through the real app: the exact one-line message,
the file named by its own name, never by the folder the app keeps uploads in."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest


@pytest.fixture(scope="module")
def client(app_server):
    from gradio_client import Client

    return Client(app_server.url, verbose=False)


def search(client, *, audio=None, image=None, text=""):
    from gradio_client import handle_file

    return client.predict(
        handle_file(str(audio)) if audio else None,
        handle_file(str(image)) if image else None,
        text,
        1.0,
        1.0,
        1.0,
        ["audio", "image"],
        3,
        api_name="/search",
    )


def wav(seconds: float, sr: int = 16000) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    buf = io.BytesIO()
    sf.write(buf, (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def png(size: tuple[int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", size, 255).save(buf, "PNG")
    return buf.getvalue()


AUDIO = {
    "id3only.mp3": (
        b"ID3\x03\x00\x00\x00\x00\x00\x10" + b"\x00" * 16,
        "cannot decode id3only.mp3 as audio (Format not recognised); use WAV, FLAC, OGG or MP3",
    ),
    "corrupt.wav": (
        b"RIFF\x24\x00\x00\x00WAVEfmt this is not audio",
        "cannot decode corrupt.wav as audio (Error in WAV/W64/RF64 file. Malformed 'fmt ' chunk); "
        "use WAV, FLAC, OGG or MP3",
    ),
    "header says 10 s.wav": (
        wav(10)[: 44 + 96],
        "header says 10 s.wav is truncated: its header promises 10.0 s "
        "of audio but the file holds 3 ms; upload the whole file",
    ),
    "short.wav": (wav(0.2), "short.wav is 200 ms long, too short to search with; use a clip of at least 1 s"),
}
IMAGES = {
    "line.png": (
        png((1, 60000)),
        "line.png is 1x60000 pixels, an aspect ratio of 1:60000 (at most 25:1 either "
        "way); crop it to the part to search with",
    ),
    "notes.png": (
        b"not an image",
        "cannot decode notes.png as an image; use PNG, JPEG, WebP, GIF, BMP or TIFF",
    ),
    "empty.png": (b"", "empty.png is empty (0 bytes)"),
}


@pytest.mark.parametrize(("kind", "name"), [("audio", n) for n in AUDIO] + [("image", n) for n in IMAGES])
def test_an_upload_error_is_the_exact_line(client, tmp_path, app_server, kind, name):
    from gradio_client.exceptions import AppError

    content, expected = (AUDIO if kind == "audio" else IMAGES)[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AppError) as ei:
        search(client, **{kind: path})
    message = str(ei.value)
    assert message == expected
    # no folder of the visitor's machine nor of the app's upload cache
    assert str(tmp_path) not in message and not re.search(r"(^|[\s('\"])/\w", message)
    assert app_server.alive()


def test_many_frames_and_a_truncated_clip_are_noted_in_the_status_line(client, tmp_path):
    from PIL import Image

    frames = [Image.new("RGB", (64, 64), (i % 256, (7 * i) % 256, (13 * i) % 256)) for i in range(500)]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    results, status = search(client, image=gif)
    assert len(results) == 3
    assert "anim.gif has 500 frames, only the first is used" in status
    cut = tmp_path / "cut.wav"
    cut.write_bytes(wav(10)[: 44 + 2 * 16000 * 6])
    results, status = search(client, audio=cut)
    assert len(results) == 3
    assert (
        "cut.wav is truncated: its header promises 10.0 s of audio but the file holds 6.0 s, searched with "
        "those 6.0 s"
    ) in status
