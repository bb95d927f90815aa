"""Score pages from the wild brought into the form of the corpus engravings.

A model trained on engravings sees every score as one line of music (one system, left to right) at
a fixed staff size, cropped to the ink and centred on a white strip of the model's height. A
visitor's picture differs in every one of these: a phone photo shows the page on a table, in
perspective and under uneven light, at whatever size the camera gave; a page from another engraver
has its music in two or more systems. :func:`conform_score` undoes each difference in the order a
document scanner does: the page found on its surround (an Otsu 1979 threshold, its edges fitted at
full size) and rectified, the light evened, the skew measured; then it reads the staff geometry
the way optical music recognition does (Rebelo et al. 2012): the staff-line spacing is the most
common distance between the starts of vertical black runs, and staff lines are long horizontal
runs of ink (Fujinaga 2004); and finally it

* scales the page so that its staff-line spacing is the corpus's (``interline`` pixels);
* cuts it into systems (staves joined by a vertical line, or whose barlines stand at the same
  places, are one system) and sets the systems side by side, each cropped to its ink, their
  staves level, on a white strip ``height`` pixels high (a taller line is fitted into it, as the
  corpus fits a tall system): one line of music.

It reads what a visitor would plausibly give: a phone photo at the camera's resolution or near
the engraving's, a screenshot, another engraver's page. Staff lines too faint to threshold (a
small photo, blurred and compressed) are read from the rows' mean darkness instead; a picture whose
staves are found neither way is used as it comes.

An image already in that form (one system on white paper, ``height`` pixels high: every corpus
engraving) is returned unchanged, so the index's own images embed as before. An image without
staff lines (not a score) is returned unchanged too.

Example::

    from xmr.media.score import conform_score
    line = conform_score(load_image("photo.jpg", mode="L"), interline=6.3, height=256)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

MARGIN = 8                 # white pixels around the ink, as the corpus crops its engravings
INK = 231                  # a pixel darker than this is ink (the corpus crop's threshold)
LINE = INK                 # ... and for reading the staves
MAX_SIDE = 2400            # larger pictures are reduced first (a 12 MP photo to about 5 MP)
PAGE_MIN, PAGE_MAX = 0.15, 0.97  # a page covers this share of a photo
MAX_SKEW = 5.0             # degrees searched for the staff lines' slope
MIN_SPACING = 5.0          # staff lines closer than this are read at a larger size


@dataclass
class ScoreLayout:
    """What :func:`read_layout` found on a page (pixels of the page after rectification and deskew).

    Attributes:
        page: whether a page was found on a darker surround (and rectified).
        angle: the staff lines' slope in degrees (the page is rotated by ``-angle``).
        zoom: how much the picture was resized to be read (1.0: at its own size).
        interline: staff-line spacing in pixels (0: no staff found).
        staves: ``(top, bottom)`` rows of each staff (its first and last line).
        systems: ``(top, bottom)`` rows of each system's band, top to bottom.
    """

    page: bool = False
    angle: float = 0.0
    zoom: float = 1.0
    interline: float = 0.0
    staves: list[tuple[int, int]] = field(default_factory=list)
    systems: list[tuple[int, int]] = field(default_factory=list)


def conform_score(img, *, interline: float, height: int):
    """A score picture as one line of music at the corpus's staff size (see the module docstring).

    Args:
        img: a ``PIL.Image.Image`` (any mode; the result is grayscale ``"L"``).
        interline: the staff-line spacing of the corpus engravings, in pixels.
        height: the height of the corpus engravings (and of the result).

    Returns:
        A grayscale PIL image ``height`` pixels high; ``img`` itself (converted to ``"L"``) when it
        is already in that form or shows no staff.
    """
    return read_score_page(img, interline=interline, height=height)[0]


def read_score_page(img, *, interline: float, height: int) -> tuple[Any, str | None]:
    """:func:`conform_score` plus what was done, for the user: ``(image, note)``, the note ``None``
    when the picture is used as it came, else e.g. ``"read as a photographed page: straightened,
    scaled 0.42x"`` or ``"read as a score page: its 2 systems set on one line"``."""
    from PIL import Image

    gray = img.convert("L") if img.mode != "L" else img
    page, layout = read_layout(gray)
    if not layout.systems:
        return gray, None
    rows = np.asarray(page, dtype=np.uint8)
    # one system on white paper, as high as the strip: an engraving in the corpus's form already
    # (the staff size is not second-guessed: a tall many-staff system fitted into the strip has
    # lines too close to be measured reliably)
    if (not layout.page and layout.angle == 0.0 and len(layout.systems) == 1 and gray.height == height
            and float(np.percentile(rows, 90)) >= 250):
        return gray, None
    scale = interline / layout.interline
    crops, centres = [], []  # each system cropped to its ink, and its staves' middle row in the crop
    reach = int(round(5 * layout.interline))  # ledger lines, lyrics and dynamics: within 5 spacings
    for top, bottom in layout.systems:
        staves = [st for st in layout.staves if top <= st[0] and st[1] < bottom]
        if not staves:
            continue
        top, bottom = max(top, staves[0][0] - reach), min(bottom, staves[-1][1] + reach)
        band = rows[top:bottom]
        ink = band < INK
        # the music's extent: rows and columns with a few dots of ink (a photo's grain has single ones)
        cols, lines = np.flatnonzero(ink.sum(axis=0) >= 2), np.flatnonzero(ink.sum(axis=1) >= 3)
        if cols.size == 0 or lines.size == 0:
            continue
        pad = int(round(MARGIN / scale))
        y0, y1 = max(lines[0] - pad, 0), min(lines[-1] + 1 + pad, band.shape[0])
        x0, x1 = max(cols[0] - pad, 0), min(cols[-1] + 1 + pad, band.shape[1])
        crops.append(Image.fromarray(np.ascontiguousarray(band[y0:y1, x0:x1])))
        centres.append((staves[0][0] + staves[-1][1]) / 2 - top - y0)
    if not crops:
        return gray, None
    # the systems side by side with their staves on one level; the line's ink fitted into the
    # strip's height if taller (as the corpus fits a tall system) and centred
    above = max(c for c in centres) * scale
    below = max(cr.height - c for cr, c in zip(crops, centres, strict=True)) * scale
    s = scale * min(1.0, height / (above + below))
    method = Image.Resampling.LANCZOS if s < 1.0 else Image.Resampling.BICUBIC
    resized = [cr.resize((max(1, round(cr.width * s)), max(1, round(cr.height * s))), method) for cr in crops]
    level = (height - (above + below) * s / scale) / 2 + above * s / scale  # the staves' middle row
    out = Image.new("L", (sum(r.width for r in resized), height), 255)
    x = 0
    for r, c in zip(resized, centres, strict=True):
        out.paste(r, (x, int(round(level - c * s))))
        x += r.width
    done = ["straightened"] if layout.page or layout.angle else []
    if abs(s * layout.zoom - 1.0) > 0.05:
        done.append(f"scaled {s * layout.zoom:.2g}x")
    if len(resized) > 1:
        done.append(f"its {len(resized)} systems set on one line")
    kind = "a photographed page" if layout.page else "a score page"
    return out, f"read as {kind}" + (f": {', '.join(done)}" if done else ", cropped to its music")


def read_layout(gray) -> tuple[Any, ScoreLayout]:
    """The page of a grayscale picture (rectified, evenly lit, deskewed) and its :class:`ScoreLayout`.

    Returns ``(page image, layout)``; ``layout.systems`` is empty when no staff was found.
    """
    from PIL import Image

    layout = ScoreLayout()
    if max(gray.size) > MAX_SIDE:
        gray, layout.zoom = _zoom(gray, MAX_SIDE / max(gray.size)), MAX_SIDE / max(gray.size)
    arr = np.asarray(gray, dtype=np.float32)
    quad = find_page(arr)
    if quad is not None:
        arr = rectify(arr, quad)
        layout.page = True
    arr = even_light(arr)
    ink = arr < LINE
    layout.angle = skew_angle(ink)
    page = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if layout.angle != 0.0:
        page = page.rotate(layout.angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    # staff lines a few pixels apart merge when thresholded: read a small picture at 2 or 3 times its size
    original, zoom = page, layout.zoom
    for f in (1, 2, 3):
        if f > 1:
            if max(original.size) * f > MAX_SIDE:
                break
            page, layout.zoom = _zoom(original, float(f)), zoom * f
        ink = np.asarray(page) < LINE
        layout.interline = staff_spacing(ink)
        layout.staves = find_staves(ink, layout.interline) if layout.interline > 0 else []
        if layout.staves and layout.interline >= MIN_SPACING:
            break
    if not layout.staves:  # lines too faint or grainy to hold a run of ink (a small, blurred photo)
        arr = np.asarray(page, dtype=np.float32)
        for spacing in (layout.interline, profile_spacing(arr)):
            staves = faint_staves(arr, spacing) if spacing >= MIN_SPACING else []
            if staves:
                layout.interline, layout.staves = spacing, staves
                break
    if layout.staves:
        layout.systems = group_systems(ink, layout.staves, layout.interline)
    return page, layout


def _zoom(img, f: float):
    from PIL import Image

    method = Image.Resampling.LANCZOS if f < 1.0 else Image.Resampling.BICUBIC
    return img.resize((max(1, round(img.width * f)), max(1, round(img.height * f))), method)


# --------------------------------------------------------------------------- the page

def _otsu(values: np.ndarray) -> float:
    hist = np.bincount(np.clip(values, 0, 255).astype(np.int64).ravel(), minlength=256).astype(np.float64)
    p = hist / max(hist.sum(), 1.0)
    omega, mu = np.cumsum(p), np.cumsum(p * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * omega - mu) ** 2 / (omega * (1.0 - omega))
    if not np.isfinite(between).any():  # one grey level only (a blank picture): nothing to split
        return float(np.clip(values, 0, 255).min())
    return float(np.nanargmax(between))


def find_page(arr: np.ndarray) -> np.ndarray | None:
    """Corners ``(4, 2)`` (x, y: top-left, top-right, bottom-right, bottom-left) of a bright page on
    a darker surround, or ``None`` when the picture is the page (no surround)."""
    from scipy import ndimage

    h, w = arr.shape
    f = max(1, int(np.ceil(max(h, w) / 400)))
    small = ndimage.uniform_filter(arr, size=f)[::f, ::f]
    small = ndimage.uniform_filter(small, size=5)
    bright = small > _otsu(small)
    bright = ndimage.binary_fill_holes(ndimage.binary_opening(bright, iterations=2))
    labels, n = ndimage.label(bright)
    if n == 0:
        return None
    sizes = ndimage.sum_labels(bright, labels, index=np.arange(1, n + 1))
    k = int(np.argmax(sizes)) + 1
    share = float(sizes[k - 1]) / bright.size
    if not PAGE_MIN <= share <= PAGE_MAX:
        return None
    region = labels == k
    frame = np.concatenate([region[0], region[-1], region[:, 0], region[:, -1]])
    if frame.mean() > 0.5:
        return None  # the bright region runs round the picture's edge: the picture is the page
    outside = small[~region]
    if np.median(outside) > 0.8 * np.median(small[region]):
        return None  # the surround is as bright as the page
    ys, xs = np.nonzero(region)
    s, d = xs + ys, xs - ys
    corners = np.array([[xs[s.argmin()], ys[s.argmin()]], [xs[d.argmax()], ys[d.argmax()]],
                        [xs[s.argmax()], ys[s.argmax()]], [xs[d.argmin()], ys[d.argmin()]]], np.float64)
    corners = (corners + 0.5) * f
    # the extreme points are as coarse as the small picture: fit each edge at full size and
    # intersect the edges (a corner a few pixels off leaves the staff lines sloped across the page)
    page = arr > _otsu(small)
    edges = [_edge(page, corners[k], corners[(k + 1) % 4], reach=6 * f) for k in range(4)]
    if any(e is None for e in edges):
        return corners
    refined = np.array([_meet(edges[k - 1], edges[k]) for k in range(4)])
    return refined if np.abs(refined - corners).max() <= 8 * f else corners


def _edge(page: np.ndarray, a: np.ndarray, b: np.ndarray, *, reach: int) -> tuple[np.ndarray, float] | None:
    """The page's edge near the side ``a``-``b`` as a line ``(unit normal n, c)`` with ``n . p = c``:
    where the page starts along the normal, at 40 points of the side's middle 80 %, fitted by least
    squares without the points far off the others (a stain, a finger)."""
    side = b - a
    normal = np.array([side[1], -side[0]]) / (np.linalg.norm(side) or 1.0)  # points off the page
    h, w = page.shape
    points = []
    for t in np.linspace(0.1, 0.9, 40):
        base = a + t * side
        steps = np.arange(-reach, reach + 1)
        xy = np.round(base[None, :] + steps[:, None] * normal[None, :]).astype(int)
        ok = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        if not ok.all():
            continue
        inside = page[xy[:, 1], xy[:, 0]]
        change = np.flatnonzero(inside[:-1] & ~inside[1:])  # last page pixel before the surround
        if change.size:
            points.append(base + (steps[change[0]] + 0.5) * normal)
    if len(points) < 10:
        return None
    pts = np.array(points)
    for _ in range(2):
        c = float(np.median(pts @ normal))
        keep = np.abs(pts @ normal - c) <= max(2.0, 2.0 * np.median(np.abs(pts @ normal - c)))
        pts = pts[keep] if keep.sum() >= 10 else pts
    # total least squares: the normal is the direction of least spread
    centre = pts.mean(axis=0)
    _, _, vt = np.linalg.svd(pts - centre)
    n = vt[-1] if vt[-1] @ normal >= 0 else -vt[-1]
    return n, float(n @ centre)


def _meet(e1: tuple[np.ndarray, float], e2: tuple[np.ndarray, float]) -> np.ndarray:
    """The point where two lines ``n . p = c`` cross."""
    return np.linalg.solve(np.stack([e1[0], e2[0]]), np.array([e1[1], e2[1]]))


def rectify(arr: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The quadrilateral ``quad`` of ``arr`` warped to an upright rectangle (kornia), its edge trimmed."""
    import kornia
    import torch

    tl, tr, br, bl = quad
    w = int(round((np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2))
    h = int(round((np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2))
    src = torch.tensor(quad, dtype=torch.float32)[None]
    dst = torch.tensor([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=torch.float32)[None]
    m = kornia.geometry.transform.get_perspective_transform(src, dst)
    x = torch.from_numpy(np.ascontiguousarray(arr))[None, None]
    out = kornia.geometry.transform.warp_perspective(x, m, (h, w), mode="bilinear",
                                                     padding_mode="border")[0, 0].numpy()
    trim = max(2, int(0.01 * max(h, w)))  # the page's own edge and what lies beyond it
    return out[trim:h - trim, trim:w - trim]


def even_light(arr: np.ndarray) -> np.ndarray:
    """Paper brought to white: the picture divided by its paper brightness (a grey closing, which
    fills the ink, smoothed), then by the paper's own level in that ratio (its median), so that
    the paper is white and the ink keeps its shades (a blurred stroke stays grey, not bold)."""
    from scipy import ndimage

    if arr.min() >= INK or (np.median(arr) >= 250 and np.percentile(arr, 0.5) <= 64):
        return arr  # no ink, or white paper and black ink already (an engraving, a scan)
    size = max(15, min(arr.shape) // 12)
    f = max(1, size // 15)
    small = arr[::f, ::f]
    paper = ndimage.grey_closing(small, size=(max(3, size // f),) * 2)
    paper = ndimage.uniform_filter(paper, size=max(3, size // f))
    paper = ndimage.zoom(paper, (arr.shape[0] / small.shape[0], arr.shape[1] / small.shape[1]), order=1)
    ratio = arr / np.maximum(paper[:arr.shape[0], :arr.shape[1]], 1.0)
    blank = ratio[ratio > 0.75]
    white = float(np.median(blank)) if blank.size else 1.0
    return np.clip(ratio / white, 0.0, 1.0) * 255.0


def skew_angle(ink: np.ndarray) -> float:
    """The slope of the staff lines in degrees (0.0 when within half a degree): the angle whose
    sheared horizontal projection of the ink is the most peaked."""
    ys, xs = np.nonzero(ink)
    if ys.size < 100:
        return 0.0
    xs = xs - ink.shape[1] / 2.0
    best, best_score = 0.0, -1.0
    for a in np.arange(-MAX_SKEW, MAX_SKEW + 1e-9, 0.25):
        rows = np.round(ys + xs * np.tan(np.radians(a))).astype(np.int64)
        hist = np.bincount(rows - rows.min())
        score = float(np.dot(hist, hist))
        if score > best_score:
            best, best_score = float(a), score
    return 0.0 if abs(best) < 0.5 else -best


# --------------------------------------------------------------------------- the staves

def staff_spacing(ink: np.ndarray) -> float:
    """The staff-line spacing (line to line) in pixels: the most common distance between the starts
    of consecutive vertical black runs in a column; 0 when the picture shows no staff."""
    h, w = ink.shape
    pad = np.zeros((1, w), np.int8)
    starts = np.diff(np.vstack([pad, ink.astype(np.int8)]), axis=0) == 1
    cols, rows = np.nonzero(starts.T)
    same = cols[1:] == cols[:-1]
    gaps = (rows[1:] - rows[:-1])[same]
    gaps = gaps[(gaps >= 3) & (gaps <= max(4, h // 6))]
    if gaps.size < w // 4:
        return 0.0
    hist = np.bincount(gaps).astype(np.float64)
    k = int(hist.argmax())
    # the sub-pixel spacing: the mean over the mode and its neighbours
    lo, hi = max(k - 1, 0), min(k + 2, hist.size)
    return float(np.dot(np.arange(lo, hi), hist[lo:hi]) / hist[lo:hi].sum())


def find_staves(ink: np.ndarray, interline: float) -> list[tuple[int, int]]:
    """``(top, bottom)`` rows of each staff (its first and last line): runs of 4-6 staff lines
    spaced by about ``interline``. A staff line is a thin band of rows that hold a long run of ink
    once gaps of up to half a spacing are closed along the row (a faint, grainy or photographed
    line breaks up): long for a short last system too, longer than any note, beam or the flat top
    of a slur."""
    from scipy import ndimage

    gap = max(3, int(round(interline / 2)))
    ink = ndimage.binary_closing(ink, structure=np.ones((1, gap), bool))
    cols = np.flatnonzero(ink.any(axis=0))
    if cols.size == 0:
        return []
    width = cols[-1] - cols[0] + 1
    rows = np.flatnonzero(longest_runs(ink) >= min(8.0 * interline, 0.5 * width))
    if rows.size == 0:
        return []
    plateaus = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
    # a line is thin beside the spacing; a thicker band of long runs is a filled shape, not a staff
    peaks = np.array([int(round(p.mean())) for p in plateaus if p.size <= max(4.0, interline)])
    if peaks.size == 0:
        return []
    return _staves_of_lines(peaks, interline)


def faint_staves(arr: np.ndarray, interline: float) -> list[tuple[int, int]]:
    """:func:`find_staves` for staff lines too faint to threshold (a small photo, blurred and
    compressed, leaves them a light grey that breaks up along the row): a line is a peak of the
    rows' mean darkness over the music's columns, a few grey levels above the rows around it
    (the horizontal projection profile of staff-line detection; Fujinaga 2004), and a staff is
    4-6 such peaks spaced by about ``interline``."""
    from scipy import signal

    cols = np.flatnonzero((arr < LINE).sum(axis=0) >= 2)
    if cols.size == 0 or interline <= 0:
        return []
    profile = 255.0 - arr[:, cols[0]:cols[-1] + 1].mean(axis=1)
    peaks, _ = signal.find_peaks(profile, distance=max(2, int(0.6 * interline)), prominence=2.0)
    return _staves_of_lines(peaks, interline)


def profile_spacing(arr: np.ndarray) -> float:
    """The staff-line spacing as the strongest period of the rows' mean darkness (the highest peak
    of its autocorrelation from :data:`MIN_SPACING` rows on, up to a sixth of the height); 0 when
    it has none. For pictures whose lines are too faint for :func:`staff_spacing`'s runs."""
    from scipy import ndimage, signal

    h = arr.shape[0]
    profile = 255.0 - arr.mean(axis=1)
    profile = profile - ndimage.uniform_filter1d(profile, max(41, h // 20))  # the page's slow shading
    ac = np.correlate(profile, profile, "full")[h - 1:]
    peaks, _ = signal.find_peaks(ac[: max(h // 6, 1) + 1])
    peaks = peaks[peaks >= MIN_SPACING]
    return float(peaks[np.argmax(ac[peaks])]) if peaks.size else 0.0


def _staves_of_lines(peaks: np.ndarray, interline: float) -> list[tuple[int, int]]:
    """``(top, bottom)`` of each run of 4-6 line rows (ascending) spaced by about ``interline``."""
    staves: list[tuple[int, int]] = []
    run = [0]
    for i in range(1, len(peaks) + 1):
        if i < len(peaks) and abs(peaks[i] - peaks[run[-1]] - interline) <= 0.35 * interline:
            run.append(i)
            continue
        if 4 <= len(run) <= 6:
            staves.append((int(peaks[run[0]]), int(peaks[run[-1]])))
        elif len(run) > 6:  # two staves whose gap happens to be one spacing: cut in fives
            for j in range(0, len(run) - 4, 5):
                staves.append((int(peaks[run[j]]), int(peaks[run[j + 4]])))
        run = [i]
    return staves


def longest_runs(mask: np.ndarray) -> np.ndarray:
    """The longest run of True in each row of a 2-D boolean mask."""
    h, w = mask.shape
    pad = np.zeros((h, 1), np.int8)
    d = np.diff(np.hstack([pad, mask.astype(np.int8), pad]), axis=1)
    rs, cs = np.nonzero(d == 1)
    _, ce = np.nonzero(d == -1)  # row-major order: the k-th end closes the k-th start
    out = np.zeros(h, np.int64)
    np.maximum.at(out, rs, ce - cs)
    return out


def barlines(ink: np.ndarray, staff: tuple[int, int], interline: float) -> np.ndarray:
    """Columns of the barlines inside a staff (not at its two ends): runs of columns whose ink
    reaches from the staff's first line to its last and stops there."""
    top, bottom = staff
    rows = ink[top:bottom + 1]
    cols = np.flatnonzero(rows.any(axis=0))
    if cols.size == 0:
        return np.zeros(0)
    # ink from the first line to the last and none just beyond either (a stem runs on to its note)
    beyond = max(2, int(round(interline / 2)))
    above, below = ink[max(top - beyond, 0)], ink[min(bottom + beyond, ink.shape[0] - 1)]
    full = np.flatnonzero(rows.all(axis=0) & ~above & ~below)
    if full.size == 0:
        return np.zeros(0)
    runs = np.split(full, np.flatnonzero(np.diff(full) > 1) + 1)
    centres = np.array([r.mean() for r in runs if r.size <= interline])  # thin: not a clef or a chord
    # not the clef and key at the start, nor the final barline (justified systems all end there)
    inner = (centres > cols[0] + 4.0 * interline) & (centres < cols[-1] - 1.5 * interline)
    return centres[inner]


def group_systems(ink: np.ndarray, staves: list[tuple[int, int]], interline: float) -> list[tuple[int, int]]:
    """Bands of rows, one per system. Consecutive staves are one system when a vertical line of ink
    joins them (the system's start line, a barline drawn through both, a brace) or when their
    barlines stand at the same places (one system's staves share its bars; two systems of a melody
    do not), or when neither has a barline to compare. A page's systems hold the same staves, so a
    cut into systems of different sizes is taken for a misreading (one system). Each band reaches
    half way to the next system (ledger lines, lyrics and a title stay with their system)."""
    from scipy import ndimage

    if not staves:
        return []
    bridge = max(1, int(round(interline / 3)))
    closed = ndimage.binary_closing(ink, structure=np.ones((2 * bridge + 1, 1), bool))
    bars = [barlines(ink, st, interline) for st in staves]
    groups = [[0]]
    for k in range(1, len(staves)):
        prev, cur = staves[k - 1], staves[k]
        gap = closed[prev[1]:cur[0] + 1]
        joined = gap.shape[0] > 0 and bool(gap.all(axis=0).any())
        a, b = bars[k - 1], bars[k]
        if a.size and b.size:
            near = max(2.0, interline / 3)
            matched = int((np.abs(a[:, None] - b[None, :]) <= near).any(axis=1).sum())
            aligned = matched >= max(1.0, 0.5 * max(a.size, b.size))
        else:
            aligned = not (a.size or b.size)
        if joined or aligned:
            groups[-1].append(k)
        else:
            groups.append([k])
    if len({len(g) for g in groups}) > 1:
        groups = [list(range(len(staves)))]  # systems of different sizes: a misreading
    spans = [(staves[g[0]][0], staves[g[-1]][1]) for g in groups]
    bands = []
    for i, (top, bottom) in enumerate(spans):
        lo = 0 if i == 0 else (spans[i - 1][1] + top) // 2
        hi = ink.shape[0] if i == len(spans) - 1 else (bottom + spans[i + 1][0]) // 2
        bands.append((int(lo), int(hi)))
    return bands
