"""Score pictures conformed to the corpus's form (xmr.media.score), on real Verovio engravings from a
real tiny corpus build: the corpus's own images pass unchanged, another engraver's two systems
become one line at the corpus's staff size, a photographed page is found, rectified and scaled,
and a picture without staves is left alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from xmr.data.corpus import media_path
from xmr.data.corpus.excerpts import load_piece, make_excerpt
from xmr.data.corpus.render import IMAGE_HEIGHT, Layout, engrave_view
from xmr.media.image import ImageConfig
from xmr.media.score import (
    LINE,
    conform_score,
    faint_staves,
    find_page,
    find_staves,
    read_layout,
    staff_spacing,
)
from xmr.models import get_model_config

INTERLINE = get_model_config("demo-seq-lite").image_preprocessing.score_interline


def _rows(tiny_corpus):
    df = pd.read_parquet(tiny_corpus)
    return [row for _, row in df.iterrows()]


def _main_image(row, tiny_corpus) -> Image.Image:
    return Image.open(media_path(row, "image", manifest_dir=tiny_corpus.parent)).convert("L")


def _excerpt(row):
    tune = int(row["tune"])
    return make_excerpt(load_piece(str(row["source"]), tune if tune >= 0 else None),
                        int(row["measure_start"]), int(row["measure_end"]))


def _two_systems(tiny_corpus, limit: int = 4):
    """(main image, Leland two-system engraving) of tiny-corpus items that really break in two."""
    out = []
    for row in _rows(tiny_corpus):
        img, _, _, _, systems = engrave_view(_excerpt(row), Layout(font="Leland", systems=2))
        if systems == 2 and img.height <= 2 * IMAGE_HEIGHT:
            out.append((_main_image(row, tiny_corpus), img.convert("L")))
        if len(out) == limit:
            break
    assert out, "no tiny-corpus item engraves in two systems"
    return out


def test_the_registry_spacing_is_the_corpus_engravings_spacing(tiny_corpus):
    spacings = [read_layout(_main_image(row, tiny_corpus))[1].interline for row in _rows(tiny_corpus)]
    single = [s for s in spacings if s > 5.5]  # tall multi-staff excerpts are fitted (smaller)
    assert len(single) >= len(spacings) // 2
    assert abs(np.median(single) - INTERLINE) <= 0.4, spacings


def test_corpus_engravings_pass_unchanged(tiny_corpus):
    for row in _rows(tiny_corpus):
        img = _main_image(row, tiny_corpus)
        out = conform_score(img, interline=INTERLINE, height=IMAGE_HEIGHT)
        assert out.size == img.size and np.array_equal(np.asarray(out), np.asarray(img)), row["id"]


def test_two_systems_become_one_line_at_the_corpus_staff_size(tiny_corpus):
    for main, two in _two_systems(tiny_corpus):
        layout = read_layout(two)[1]
        assert len(layout.systems) == 2, layout
        line = conform_score(two, interline=INTERLINE, height=IMAGE_HEIGHT)
        again = read_layout(line)[1]
        assert line.height == IMAGE_HEIGHT and len(again.systems) == 1, again
        # the systems' staves side by side, level: one row of staves as long as both
        assert len(again.staves) == len(layout.staves) // 2 and again.angle == 0.0
        assert abs(again.interline - INTERLINE) <= 0.1 * INTERLINE
        # about as long as the music on one line: the corpus's own engraving of the same bars
        # (Leland is a wider font, and two justified systems space the notes out more)
        assert 0.8 * main.width <= line.width <= 2.0 * main.width, (main.size, line.size)
        # what was already one line is left as it is
        assert np.array_equal(np.asarray(conform_score(line, interline=INTERLINE, height=IMAGE_HEIGHT)),
                              np.asarray(line))


def _photo(img: Image.Image, size: float, corners_shift: float, seed: int):
    """The score printed on a page at ``size`` times its pixels, on a grey table, in perspective;
    returns (photo, the page's corners in the photo)."""
    rng = np.random.default_rng(seed)
    img = img.resize((round(img.width * size), round(img.height * size)), Image.Resampling.BICUBIC)
    margin = img.width // 6
    page = Image.new("L", (img.width + 2 * margin, img.height + 2 * margin), 255)
    page.paste(img, (margin, margin))
    pw, ph = page.size
    border = pw // 5
    canvas_w, canvas_h = pw + 2 * border, ph + 2 * border
    square = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], float)
    corners = square + border + rng.uniform(-corners_shift, corners_shift, (4, 2)) * [pw, ph]
    # PIL's perspective maps output pixels to input pixels: solve for page -> photo and invert
    a, b = [], []
    for (x, y), (u, v) in zip(corners, square, strict=True):
        a += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        b += [u, v]
    coeffs = np.linalg.solve(np.array(a), np.array(b)).tolist()
    big = Image.new("L", (canvas_w, canvas_h), 0)
    big.paste(page, (0, 0))
    photo = big.transform((canvas_w, canvas_h), Image.Transform.PERSPECTIVE, coeffs,
                          Image.Resampling.BICUBIC, fillcolor=0)
    table = Image.new("L", (canvas_w, canvas_h), 100)
    mask = Image.new("L", page.size, 255).transform((canvas_w, canvas_h), Image.Transform.PERSPECTIVE,
                                                    coeffs, Image.Resampling.BILINEAR, fillcolor=0)
    table.paste(photo, (0, 0), mask)
    arr = np.asarray(table, np.float32) * np.linspace(0.85, 1.0, canvas_w)[None, :]  # uneven light
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), corners


@pytest.mark.parametrize("size", [2.5, 1.0])
def test_a_photographed_page_is_found_rectified_and_scaled(tiny_corpus, size):
    main, _ = _two_systems(tiny_corpus, limit=1)[0]
    photo, corners = _photo(main, size, 0.04, seed=int(size * 10))
    quad = find_page(np.asarray(photo, np.float32))
    assert quad is not None
    scale = max(photo.size)
    assert np.abs(quad - corners).max() <= 0.03 * scale, (quad, corners)
    layout = read_layout(photo)[1]
    assert layout.page and len(layout.systems) == 1
    line = conform_score(photo, interline=INTERLINE, height=IMAGE_HEIGHT)
    again = read_layout(line)[1]
    assert line.height == IMAGE_HEIGHT and len(again.systems) == 1
    assert abs(again.interline - INTERLINE) <= 0.12 * INTERLINE, again
    # the line is the engraving's music again: about its width, paper white, ink dark
    assert 0.85 * main.width <= line.width <= 1.25 * main.width, (main.size, line.size)
    arr = np.asarray(line)
    assert np.median(arr) >= 240 and arr.min() <= 80


def _blurred_small_photo(main: Image.Image, seed: int) -> Image.Image:
    """A photo from further away: the page at 0.8 times, lens blur, grain, JPEG quality 40."""
    import io

    from PIL import ImageFilter

    photo, _ = _photo(main, 0.8, 0.03, seed=seed)
    photo = photo.filter(ImageFilter.GaussianBlur(radius=1.2))
    arr = np.asarray(photo, np.float32) + np.random.default_rng(seed).normal(0, 6.0, photo.size[::-1])
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=40)
    return Image.open(io.BytesIO(buf.getvalue())).convert("L")


def test_a_small_blurred_photo_is_read_from_its_faint_lines(tiny_corpus):
    """Staff lines blurred to a light grey break up when thresholded, so no staff is found from
    runs of ink at any zoom; the rows' mean darkness still shows them, and the page comes out as
    one line at the corpus's staff size."""
    read = 0
    for k, row in enumerate(_rows(tiny_corpus)[:6]):
        main = _main_image(row, tiny_corpus)
        main_staves = len(read_layout(main)[1].staves)
        page, layout = read_layout(_blurred_small_photo(main, seed=k))
        ink = np.asarray(page) < LINE
        if find_staves(ink, staff_spacing(ink)):
            continue  # lines dark enough for the runs: not the case under test
        assert layout.page and layout.staves, layout
        assert layout.staves == faint_staves(np.asarray(page, np.float32), layout.interline)
        assert len(layout.staves) == main_staves, (layout, main_staves)
        # the engraving's spacing, times 0.8 for the photo, times the zoom it was read at
        spacing = read_layout(main)[1].interline * 0.8 * layout.zoom
        assert abs(layout.interline - spacing) <= 0.15 * spacing, (layout.interline, spacing)
        line = conform_score(_blurred_small_photo(main, seed=k), interline=INTERLINE, height=IMAGE_HEIGHT)
        assert line.height == IMAGE_HEIGHT
        assert 0.8 * main.width <= line.width <= 1.3 * main.width, (main.size, line.size)
        read += 1
    assert read >= 2, "no tiny-corpus photo had staff lines too faint for the runs"


def test_a_photographed_page_of_several_systems_becomes_one_line(tiny_corpus):
    """Three one-staff excerpts stacked into a page, photographed at 2.5 times in perspective:
    three systems read (the edges fitted at full size, so no staff is left sloped), set side by
    side as long as the three engravings."""
    lines = [img for img in (_main_image(row, tiny_corpus) for row in _rows(tiny_corpus))
             if len(read_layout(img)[1].staves) == 1][:3]
    assert len(lines) == 3
    page = Image.new("L", (max(i.width for i in lines), 3 * 160), 255)
    for k, img in enumerate(lines):
        page.paste(img.crop((0, 48, img.width, 208)), (0, 160 * k))
    photo, _ = _photo(page, 2.5, 0.03, seed=3)
    layout = read_layout(photo)[1]
    assert layout.page and len(layout.systems) == 3, layout
    line = conform_score(photo, interline=INTERLINE, height=IMAGE_HEIGHT)
    again = read_layout(line)[1]
    assert len(again.systems) == 1 and abs(again.interline - INTERLINE) <= 0.12 * INTERLINE
    total = sum(i.width for i in lines)
    assert 0.85 * total <= line.width <= 1.2 * total, (total, line.size)


def test_a_picture_without_staves_is_left_alone():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:300, 0:400]
    picture = Image.fromarray((127 + 60 * np.sin(xx / 23.0) * np.cos(yy / 17.0)
                               + rng.normal(0, 10, (300, 400))).clip(0, 255).astype(np.uint8))
    assert read_layout(picture)[1].systems == []
    out = conform_score(picture, interline=INTERLINE, height=IMAGE_HEIGHT)
    assert np.array_equal(np.asarray(out), np.asarray(picture))
    rgb = Image.merge("RGB", [picture] * 3)
    assert conform_score(rgb, interline=INTERLINE, height=IMAGE_HEIGHT).mode == "L"
    for level in (255, 128, 0):  # one grey level: no threshold splits it, nothing is read
        blank = Image.new("L", (300, 200), level)
        assert np.array_equal(np.asarray(conform_score(blank, interline=INTERLINE, height=IMAGE_HEIGHT)),
                              np.asarray(blank))


def test_image_config_keeps_old_configs_and_checks_the_spacing():
    assert "score_interline" not in ImageConfig().to_dict()  # fingerprints of models without it hold
    cfg = ImageConfig(size=(256, 1024), mode="L", score_interline=6.3)
    assert ImageConfig.from_dict(cfg.to_dict()) == cfg
    from xmr.errors import ConfigError

    for bad in (0.5, 100.0, "6"):
        with pytest.raises(ConfigError, match="score_interline"):
            ImageConfig(score_interline=bad)
