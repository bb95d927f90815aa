"""Render an excerpt to audio (music21 -> MIDI -> FluidSynth) and to an image (Verovio -> resvg).

Both renderings are deterministic: FluidSynth runs without reverb and chorus (their modulation
is the only time-varying part) and its samples are re-encoded by us (the WAV it writes carries a
timestamp); Verovio's SVG is rasterised and re-saved by Pillow, which writes no timestamps.
Files are written to a temporary name and moved into place, so an interrupted build never leaves
half a file that a resumed build would take as finished.
"""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmr.errors import MissingAssetError

SAMPLE_RATE = 16000
IMAGE_HEIGHT = 256  # every image: this many pixels high, staff size fixed by VEROVIO_SCALE
IMAGE_MAX_WIDTH = 1600
VEROVIO_SCALE = 35
PEAK = 0.89  # -1 dBFS: every clip is peak-normalised to this
SOUNDFONT_DIRS = ("/usr/share/sounds/sf2", "/usr/share/sounds/sf3", "/usr/share/soundfonts",
                  "/usr/local/share/soundfonts")
DEFAULT_SOUNDFONT = "FluidR3_GM.sf2"
UNSEEN_SOUNDFONT = "TimGM6mb.sf2"
# Text of the views (titles): one serif font file, so that no other installed font changes the
# pixels (Debian fonts-dejavu-core). The main images carry no text and are rasterised as before.
TEXT_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"
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
    hint = {"FluidR3_GM.sf2": "fluid-soundfont-gm", "TimGM6mb.sf2": "timgm6mb-soundfont",
            "MuseScore_General_Full.sf2": "musescore-general-soundfont-lossless",
            "OPL-3_FM_128M.sf2": "opl3-soundfont"}.get(path.name)
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


_PAGE_MARGINS = {"pageMarginTop": 20, "pageMarginBottom": 20, "pageMarginLeft": 20, "pageMarginRight": 20}


@functools.lru_cache(maxsize=1)
def _toolkit():
    import verovio

    verovio.enableLog(verovio.LOG_OFF)
    tk = verovio.toolkit()
    tk.setOptions({
        "scale": VEROVIO_SCALE, "breaks": "none", "header": "none", "footer": "none",
        "adjustPageHeight": True, "adjustPageWidth": True, "xmlIdSeed": 1, **_PAGE_MARGINS,
    })
    return tk


def excerpt_xml(excerpt) -> str:
    """MusicXML text of an excerpt (what Verovio engraves; exported once per item for all its
    engravings)."""
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    return GeneralObjectExporter(excerpt).parse().decode("utf-8")


def engrave_xml(xml: str) -> str:
    """Verovio SVG of an excerpt's MusicXML (one system, no title or page furniture)."""
    tk = _toolkit()
    if not tk.loadData(xml):
        raise RenderError("verovio could not load the excerpt")
    svg = tk.renderToSVG(1)
    if not svg:
        raise RenderError("verovio rendered nothing")
    return svg


def engrave(excerpt) -> str:
    """Verovio SVG of an excerpt (one system, no title or page furniture)."""
    return engrave_xml(excerpt_xml(excerpt))


@dataclass(frozen=True)
class Layout:
    """How a view engraves an excerpt: a SMuFL music font that Verovio ships, spacing, staff size
    (Verovio's ``scale``, percent), a title above the music (None: none) and the number of systems
    (1, or 2: line broken near the middle). ``Layout()`` is the main image's engraving."""

    font: str = "Leipzig"
    spacing_linear: float = 0.25
    spacing_non_linear: float = 0.6
    scale: int = VEROVIO_SCALE
    title: str | None = None
    systems: int = 1


def _with_title(xml: str, title: str | None) -> str:
    """The MusicXML with ``title`` as its work title (or none) and no creator (Verovio would print
    music21's placeholder composer)."""
    from xml.sax.saxutils import escape

    xml = re.sub(r"\s*<movement-title>.*?</movement-title>", "", xml, count=1, flags=re.S)
    xml = re.sub(r"\s*<creator [^>]*>.*?</creator>", "", xml, flags=re.S)
    if title:
        xml = re.sub(r"(<score-partwise[^>]*>)", lambda m: f"{m.group(1)}\n  <work><work-title>"
                     f"{escape(title)}</work-title></work>", xml, count=1)
    return xml


@functools.lru_cache(maxsize=1)
def _view_toolkit():
    import verovio

    verovio.enableLog(verovio.LOG_OFF)
    return verovio.toolkit()


# Verovio writes text as <text font-size="0px"> around tspans that carry the size; resvg then
# anchors a centred title as if it had no width (it is drawn off the page): the text gets the size.
_ZERO_TEXT = re.compile(r'<text font-size="0px">(?=(?:(?!</text>).)*?font-size="([0-9.]+px)")', re.S)


def _engrave_with(xml: str, options: dict) -> str:
    tk = _view_toolkit()
    tk.resetOptions()
    tk.setOptions(options)
    if not tk.loadData(xml):
        raise RenderError("verovio could not load the excerpt")
    svg = tk.renderToSVG(1)
    if not svg:
        raise RenderError("verovio rendered nothing")
    return _ZERO_TEXT.sub(lambda m: f'<text font-size="{m.group(1)}">', svg)


# Page widths tried for two systems, as fractions of the one-system width: the first that breaks
# the line exactly once wins.
_TWO_SYSTEM_FRACTIONS = (0.6, 0.7, 0.5, 0.8, 0.4, 0.9)


def engrave_layout(xml: str, layout: Layout) -> tuple[str, int]:
    """(Verovio SVG, systems drawn) of an excerpt's MusicXML engraved with ``layout``.

    The excerpt is engraved on one line first to measure it. A title is centred over a page as
    wide as that line (or as the title). Two systems: pages of a fraction of that width with
    automatic line breaks, until exactly two systems come out (an excerpt that will not break in
    two keeps what the last try gave).
    """
    options = {
        "scale": layout.scale, "font": layout.font, "spacingLinear": layout.spacing_linear,
        "spacingNonLinear": layout.spacing_non_linear, "header": "none", "footer": "none",
        "adjustPageHeight": True, "adjustPageWidth": True, "xmlIdSeed": 1, "pageHeight": 60000,
        **_PAGE_MARGINS,
    }
    one = _engrave_with(_with_title(xml, None), {**options, "breaks": "none"})
    if layout.systems <= 1 and not layout.title:
        return one, 1
    import xml.etree.ElementTree as ET

    natural = _px(ET.fromstring(one).get("width")) * 100.0 / layout.scale  # Verovio units
    # A centred title is cut where the page ends: the page is made at least as wide as it.
    title_width = 40.0 * len(layout.title) + 100.0 if layout.title else 0.0
    options.update(header="auto" if layout.title else "none", adjustPageWidth=False)
    xml = _with_title(xml, layout.title)
    if layout.systems <= 1:
        width = int(max(natural, title_width))
        return _engrave_with(xml, {**options, "breaks": "none", "pageWidth": width}), 1
    svg, systems = one, 1
    for fraction in _TWO_SYSTEM_FRACTIONS:
        width = int(max(natural * fraction, 100.0))
        svg = _engrave_with(xml, {**options, "breaks": "auto", "pageWidth": width})
        systems = 1 + max(bar["system"] for bar in svg_bars(svg))
        if systems == layout.systems:
            break
    return svg, systems


def rasterize(svg: str):
    """Grayscale PIL image of an SVG: cropped to the ink, fit into IMAGE_HEIGHT, padded white."""
    return rasterize_placed(svg)[0]


@dataclass(frozen=True)
class Placement:
    """Where the rasterised SVG landed in the PNG: ``png = (svg_px - left) * scale + (0, offset_y)``.

    ``left``/``top``: the crop's corner in SVG pixels (the SVG's width/height units); ``scale_x``/
    ``scale_y``: the resize of the crop (1.0 when it fitted); ``offset_y``: rows of white above the
    pasted crop; ``width``/``height``: size of the PNG.
    """

    left: int
    top: int
    scale_x: float
    scale_y: float
    offset_y: int
    width: int
    height: int

    def x(self, svg_px: float) -> float:
        return (svg_px - self.left) * self.scale_x

    def y(self, svg_px: float) -> float:
        return (svg_px - self.top) * self.scale_y + self.offset_y


def _text_font() -> dict:
    if not Path(TEXT_FONT).is_file():
        raise MissingAssetError(f"font {TEXT_FONT} not found; install the Debian package fonts-dejavu-core")
    return {"skip_system_fonts": True, "font_files": [TEXT_FONT], "serif_family": "DejaVu Serif",
            "font_family": "DejaVu Serif"}


def rasterize_placed(svg: str, *, height: int = IMAGE_HEIGHT, max_height: int | None = None,
                     max_width: int = IMAGE_MAX_WIDTH, text: bool = False):
    """:func:`rasterize` plus the :class:`Placement` that maps SVG pixels to the PNG's pixels.

    ``height``: the PNG's height; with ``max_height``, a taller engraving makes the PNG as tall as
    it, up to ``max_height`` (views of two systems keep their staff size). ``max_width``: the
    largest width. ``text``: draw text such as a title with :data:`TEXT_FONT`.
    """
    import io

    import resvg_py
    from PIL import Image, ImageOps

    png = resvg_py.svg_to_bytes(svg_string=svg, background="#ffffff", **(_text_font() if text else {}))
    img = Image.open(io.BytesIO(bytes(png))).convert("L")
    box = ImageOps.invert(img).point(lambda v: 255 if v > 24 else 0).getbbox()
    if box is None:
        raise RenderError("blank image")
    margin = 8
    left, top = max(box[0] - margin, 0), max(box[1] - margin, 0)
    img = img.crop((left, top, min(box[2] + margin, img.width), min(box[3] + margin, img.height)))
    crop_w, crop_h = img.size
    if max_height is not None:
        height = min(max(height, crop_h), max_height)
    scale = min(1.0, height / img.height, max_width / img.width)
    if scale < 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.LANCZOS)
    canvas = Image.new("L", (img.width, height), 255)
    offset_y = (height - img.height) // 2
    canvas.paste(img, (0, offset_y))
    return canvas, Placement(left=left, top=top, scale_x=img.width / crop_w, scale_y=img.height / crop_h,
                             offset_y=offset_y, width=canvas.width, height=canvas.height)


_SVG = "{http://www.w3.org/2000/svg}"
_TRANSLATE = re.compile(r"^\s*translate\(\s*([-+0-9.eE]+)[\s,]+([-+0-9.eE]+)\s*\)\s*$")
_PATH_POINTS = re.compile(r"[ML]\s*([-+0-9.eE]+)[\s,]+([-+0-9.eE]+)")


def _px(value: str | None) -> float:
    if not value:
        raise RenderError("svg without width/height")
    return float(value.strip().removesuffix("px"))


def svg_bars(svg: str) -> list[dict]:
    """Boxes of the bars (Verovio's ``g.measure`` groups, in document order) in SVG pixels.

    A bar spans its staff lines: from its left barline (for the first bar of a system, the start of
    the system, clef and signatures included) to its right barline, and from the top line of its
    top staff to the bottom line of its bottom staff. Each box is ``{"system", "x0", "x1", "y0",
    "y1", "measures"}``; ``system`` counts the systems (line breaks) from 0, ``measures`` lists the
    indices of the ``g.measure`` groups the bar is made of: Verovio draws the overflow of an
    overfull bar (more notes than its time signature holds, in some of the staves) as a further
    measure on those staves only, which belongs to the bar before it.
    """
    import xml.etree.ElementTree as ET

    root = ET.fromstring(svg)
    width, height = _px(root.get("width")), _px(root.get("height"))
    inner = root.find(f"{_SVG}svg")
    if inner is None or not inner.get("viewBox"):
        raise RenderError("svg without Verovio's definition-scale viewBox")
    vx, vy, vw, vh = (float(v) for v in inner.get("viewBox").replace(",", " ").split())
    # The inner svg fills the outer viewport (preserveAspectRatio xMidYMid meet).
    s = min(width / vw, height / vh)
    base = ((width - vw * s) / 2 - vx * s, (height - vh * s) / 2 - vy * s)
    raw: list[dict] = []
    bars: list[dict] = []
    systems = 0

    def walk(node, dx: float, dy: float, system: int) -> None:
        nonlocal systems
        for child in node:
            tag, cls = child.tag, (child.get("class") or "").split()
            if tag != f"{_SVG}g":
                continue
            tx = ty = 0.0
            if child.get("transform"):
                m = _TRANSLATE.match(child.get("transform"))
                if m is None:
                    if "measure" in cls or "system" in cls or "page-margin" in cls:
                        raise RenderError(f"unexpected svg transform {child.get('transform')!r}")
                    continue  # a glyph group: no bar lies inside it
                tx, ty = float(m.group(1)), float(m.group(2))
            if "system" in cls:
                walk(child, dx + tx, dy + ty, systems)
                systems += 1
            elif "measure" in cls:
                xs, ys, staves = [], [], 0
                for staff in child.iter(f"{_SVG}g"):
                    if "staff" not in (staff.get("class") or "").split():
                        continue
                    lines = staff.findall(f"{_SVG}path")  # the five staff lines
                    staves += bool(lines)
                    for path in lines:
                        for px, py in _PATH_POINTS.findall(path.get("d") or ""):
                            xs.append(float(px))
                            ys.append(float(py))
                if not xs:
                    raise RenderError("a bar without staff lines in the svg")
                ox, oy = dx + tx, dy + ty
                raw.append({"system": system, "x0": base[0] + (min(xs) + ox) * s,
                            "x1": base[0] + (max(xs) + ox) * s, "y0": base[1] + (min(ys) + oy) * s,
                            "y1": base[1] + (max(ys) + oy) * s, "staves": staves})
            else:
                walk(child, dx + tx, dy + ty, system)

    walk(inner, 0.0, 0.0, 0)
    full = {}
    for m in raw:
        full[m["system"]] = max(full.get(m["system"], 0), m["staves"])
    for k, m in enumerate(raw):
        prev = bars[-1] if bars else None
        if m["staves"] < full[m["system"]] and prev is not None and prev["system"] == m["system"]:
            prev.update(x1=max(prev["x1"], m["x1"]), y0=min(prev["y0"], m["y0"]), y1=max(prev["y1"], m["y1"]))
            prev["measures"].append(k)
            continue
        bars.append({key: m[key] for key in ("system", "x0", "x1", "y0", "y1")} | {"measures": [k]})
    return bars


def bar_layout(svg: str, placement: Placement) -> dict[str, list[int]]:
    """Pixel ranges of the bars in the PNG: ``bar_x0, bar_x1`` (columns ``[x0, x1)``) and
    ``bar_y0, bar_y1`` (rows ``[y0, y1)``: the staff lines of the bar's system).

    Neighbouring bars of a system share their barline, so their ranges meet without a gap.
    """
    out: dict[str, list[int]] = {"bar_x0": [], "bar_x1": [], "bar_y0": [], "bar_y1": []}
    for bar in svg_bars(svg):
        x0 = min(max(round(placement.x(bar["x0"])), 0), placement.width - 1)
        x1 = min(max(round(placement.x(bar["x1"])), x0 + 1), placement.width)
        y0 = min(max(math.floor(placement.y(bar["y0"])), 0), placement.height - 1)
        y1 = min(max(math.ceil(placement.y(bar["y1"])) + 1, y0 + 1), placement.height)
        for key, value in (("bar_x0", x0), ("bar_x1", x1), ("bar_y0", y0), ("bar_y1", y1)):
            out[key].append(int(value))
    return out


def _check_bars(layout: dict, n_bars: int) -> None:
    if len(layout["bar_x0"]) != n_bars:
        raise RenderError(f"verovio engraved {len(layout['bar_x0'])} bars, the excerpt has {n_bars}")


def _n_bars(excerpt) -> int:
    from music21 import stream

    return len(excerpt.parts[0].getElementsByClass(stream.Measure))


def engrave_image(excerpt, *, xml: str | None = None):
    """(PNG image, bar layout) of an excerpt: see :func:`rasterize` and :func:`bar_layout`.

    ``xml``: the excerpt's MusicXML when already exported (:func:`excerpt_xml`). Raises
    RenderError when Verovio's bars are not the excerpt's bars.
    """
    svg = engrave_xml(xml if xml is not None else excerpt_xml(excerpt))
    img, placement = rasterize_placed(svg)
    layout = bar_layout(svg, placement)
    _check_bars(layout, _n_bars(excerpt))
    return img, layout


def _save_png(img, path: Path) -> None:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    _atomic_write(path, buf.getvalue())


def render_image(excerpt, path: Path, *, xml: str | None = None) -> dict[str, list[int]]:
    """Engrave an excerpt, save it as a grayscale PNG of height IMAGE_HEIGHT; returns its bar
    layout (:func:`bar_layout`)."""
    img, layout = engrave_image(excerpt, xml=xml)
    _save_png(img, path)
    return layout


def engrave_view(excerpt, layout: Layout, *, xml: str | None = None):
    """(PNG image, bar layout, SVG, placement, systems) of an excerpt engraved with ``layout``.

    The PNG is IMAGE_HEIGHT pixels high, or up to IMAGE_HEIGHT per system drawn where the
    engraving is taller (staves of two systems keep about the size they have in one); bars carry
    their own system's rows (``bar_y0``/``bar_y1``).
    """
    svg, systems = engrave_layout(xml if xml is not None else excerpt_xml(excerpt), layout)
    img, placement = rasterize_placed(svg, max_height=IMAGE_HEIGHT * systems, text=True)
    bars = bar_layout(svg, placement)
    _check_bars(bars, _n_bars(excerpt))
    return img, bars, svg, placement, systems


def render_view_image(excerpt, layout: Layout, path: Path | None, *,
                      xml: str | None = None) -> tuple[dict, int]:
    """Engrave a view (:func:`engrave_view`) and save its PNG to ``path`` (None: the file is there
    already, only its bar layout is wanted); returns (bar layout, systems drawn)."""
    img, bars, _, _, systems = engrave_view(excerpt, layout, xml=xml)
    if path is not None:
        _save_png(img, path)
    return bars, systems
