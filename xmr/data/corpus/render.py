"""Render an excerpt to audio (music21 -> MIDI -> FluidSynth) and to an image (Verovio -> resvg).

Both renderings are deterministic: FluidSynth runs without reverb and chorus (their modulation
is the only time-varying part) and its samples are re-encoded by us (the WAV it writes carries a
timestamp); Verovio's SVG is rasterised and re-saved by Pillow, which writes no timestamps.
Files are written to a temporary name and moved into place, so an interrupted build never leaves
half a file that a resumed build would take as finished.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from xmr.errors import MissingAssetError

SAMPLE_RATE = 16000
IMAGE_HEIGHT = 256  # every image: this many pixels high, staff size fixed by VEROVIO_SCALE
IMAGE_MAX_WIDTH = 1600
VEROVIO_SCALE = 35
PEAK = 0.89  # -1 dBFS: every clip is peak-normalised to this
SOUNDFONT_DIRS = ("/usr/share/sounds/sf2", "/usr/share/soundfonts", "/usr/local/share/soundfonts")
DEFAULT_SOUNDFONT = "FluidR3_GM.sf2"
UNSEEN_SOUNDFONT = "TimGM6mb.sf2"
RENDER_VERSION = "1"  # bump when a change below alters rendered bytes (it keys the on-demand cache)


class RenderError(Exception):
    """Rendering failed; the message is the reason counted in the summary."""


def find_soundfont(name: str) -> Path:
    """Resolve a soundfont given as a path or as a file name in the usual soundfont folders.

    ``XMR_SOUNDFONT_DIR`` is searched first. Raises MissingAssetError naming the package to install.
    """
    path = Path(name).expanduser()
    if path.is_file():
        return path
    dirs = [os.environ["XMR_SOUNDFONT_DIR"]] if os.environ.get("XMR_SOUNDFONT_DIR") else []
    for folder in (*dirs, *SOUNDFONT_DIRS):
        candidate = Path(folder) / path.name
        if candidate.is_file():
            return candidate
    hint = {"FluidR3_GM.sf2": "fluid-soundfont-gm", "TimGM6mb.sf2": "timgm6mb-soundfont"}.get(path.name)
    raise MissingAssetError(
        f"soundfont {name} not found" + (f"; install the Debian package {hint}" if hint else "")
    )


def _fluidsynth() -> str:
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise MissingAssetError("fluidsynth not found; install the Debian package fluidsynth")
    return exe


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_midi(performance, path: Path) -> None:
    """Write a music21 stream (with tempo and programs set) as a standard MIDI file."""
    from music21 import midi

    mf = midi.translate.streamToMidiFile(performance)
    path.write_bytes(mf.writestr())


def synthesize(midi_path: Path, soundfont: Path, *, seconds: float) -> np.ndarray:
    """FluidSynth render of ``midi_path``: mono float32 at SAMPLE_RATE, exactly ``seconds`` long.

    The result is padded or trimmed to the expected length and peak-normalised to PEAK.
    """
    import soundfile as sf

    with tempfile.TemporaryDirectory(prefix="xmr-fs-") as tmp:
        wav = Path(tmp) / "out.wav"
        cmd = [_fluidsynth(), "-n", "-i", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(SAMPLE_RATE),
               "-O", "float", "-T", "wav", "-o", "synth.dynamic-sample-loading=1", "-F", str(wav),
               str(soundfont), str(midi_path)]
        proc = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
        if proc.returncode != 0 or not wav.is_file():
            raise RenderError(f"fluidsynth exit {proc.returncode}")
        data, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    if sr != SAMPLE_RATE:
        raise RenderError(f"fluidsynth wrote {sr} Hz")
    mono = data.mean(axis=1)
    n = int(round(seconds * SAMPLE_RATE))
    mono = np.pad(mono[:n], (0, max(0, n - len(mono))))
    peak = float(np.abs(mono).max())
    if peak < 1e-4:
        raise RenderError("silent audio")
    return (mono * (PEAK / peak)).astype(np.float32)


def write_flac(wave: np.ndarray, path: Path) -> None:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wave, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    _atomic_write(path, buf.getvalue())


def render_audio(performance, path: Path, *, soundfont: Path, seconds: float) -> None:
    """Render a performance stream (see ``excerpts.set_performance``) to a mono 16 kHz FLAC file."""
    with tempfile.TemporaryDirectory(prefix="xmr-midi-") as tmp:
        mid = Path(tmp) / "in.mid"
        write_midi(performance, mid)
        wave = synthesize(mid, soundfont, seconds=seconds)
    write_flac(wave, path)


@functools.lru_cache(maxsize=1)
def _toolkit():
    import verovio

    verovio.enableLog(verovio.LOG_OFF)
    tk = verovio.toolkit()
    tk.setOptions({
        "scale": VEROVIO_SCALE, "breaks": "none", "header": "none", "footer": "none",
        "adjustPageHeight": True, "adjustPageWidth": True, "xmlIdSeed": 1,
        "pageMarginTop": 20, "pageMarginBottom": 20, "pageMarginLeft": 20, "pageMarginRight": 20,
    })
    return tk


def engrave(excerpt) -> str:
    """Verovio SVG of an excerpt (one system, no title or page furniture)."""
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    xml = GeneralObjectExporter(excerpt).parse().decode("utf-8")
    tk = _toolkit()
    if not tk.loadData(xml):
        raise RenderError("verovio could not load the excerpt")
    svg = tk.renderToSVG(1)
    if not svg:
        raise RenderError("verovio rendered nothing")
    return svg


def rasterize(svg: str):
    """Grayscale PIL image of an SVG: cropped to the ink, fit into IMAGE_HEIGHT, padded white."""
    import io

    import resvg_py
    from PIL import Image, ImageOps

    png = resvg_py.svg_to_bytes(svg_string=svg, background="#ffffff")
    img = Image.open(io.BytesIO(bytes(png))).convert("L")
    box = ImageOps.invert(img).point(lambda v: 255 if v > 24 else 0).getbbox()
    if box is None:
        raise RenderError("blank image")
    margin = 8
    img = img.crop((max(box[0] - margin, 0), max(box[1] - margin, 0),
                    min(box[2] + margin, img.width), min(box[3] + margin, img.height)))
    scale = min(1.0, IMAGE_HEIGHT / img.height, IMAGE_MAX_WIDTH / img.width)
    if scale < 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.LANCZOS)
    canvas = Image.new("L", (img.width, IMAGE_HEIGHT), 255)
    canvas.paste(img, (0, (IMAGE_HEIGHT - img.height) // 2))
    return canvas


def render_image(excerpt, path: Path) -> None:
    """Engrave an excerpt and save it as a grayscale PNG of height IMAGE_HEIGHT."""
    import io

    img = rasterize(engrave(excerpt))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    _atomic_write(path, buf.getvalue())
