"""Image decoding and preparation: formats, EXIF, modes, resize policies, and one test per bad input."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from xmr.errors import ConfigError, InputError
from xmr.media.image import ImageConfig, load_image, prepare_image, resize_image

RED, BLUE = (255, 0, 0), (0, 0, 255)


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def halves(w=40, h=20) -> Image.Image:
    """Left half red, right half blue."""
    img = Image.new("RGB", (w, h), BLUE)
    img.paste(Image.new("RGB", (w // 2, h), RED), (0, 0))
    return img


def bmp_header(width: int, height: int) -> bytes:
    """A 24-bit BMP header that declares a size but carries no pixel data."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert excinfo.type is InputError and msg and "\n" not in msg
    return msg


# --------------------------------------------------------------------------- accepted inputs


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_each_format_decodes(fmt):
    img = load_image(encode(halves(), fmt))
    assert img.mode == "RGB" and img.size == (40, 20)
    left, right = np.asarray(img)[10, 5].astype(int), np.asarray(img)[10, 35].astype(int)
    assert left[0] > 200 and left[2] < 60 and right[2] > 200 and right[0] < 60


def test_path_bytes_file_pil_and_array_agree(tmp_path):
    path = tmp_path / "x.png"
    halves().save(path)
    ref = np.asarray(load_image(path))
    np.testing.assert_array_equal(np.asarray(load_image(str(path))), ref)
    np.testing.assert_array_equal(np.asarray(load_image(path.read_bytes())), ref)
    with open(path, "rb") as fh:
        np.testing.assert_array_equal(np.asarray(load_image(fh)), ref)
    np.testing.assert_array_equal(np.asarray(load_image(halves())), ref)
    np.testing.assert_array_equal(np.asarray(load_image(ref.copy())), ref)
    np.testing.assert_array_equal(np.asarray(load_image(ref.astype(np.float32) / 255)), ref)


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img = load_image(encode(halves(40, 20), "PNG", exif=exif))
    assert img.size == (20, 40)
    arr = np.asarray(img)
    assert tuple(arr[5, 10]) == RED and tuple(arr[35, 10]) == BLUE  # left half became the top


def test_grayscale_stays_grayscale_unless_asked():
    gray = Image.new("L", (8, 8), 100)
    assert load_image(encode(gray, "PNG")).mode == "L"
    rgb = load_image(encode(gray, "PNG"), mode="RGB")
    assert rgb.mode == "RGB" and tuple(np.asarray(rgb)[0, 0]) == (100, 100, 100)
    assert load_image(encode(halves(), "PNG"), mode="L").mode == "L"


def test_transparency_becomes_white():
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    img.putpixel((0, 0), (0, 0, 0, 255))
    arr = np.asarray(load_image(encode(img, "PNG")))
    assert tuple(arr[1, 1]) == (255, 255, 255) and tuple(arr[0, 0]) == (0, 0, 0)


def test_sixteen_bit_png_is_scaled():
    arr16 = np.full((4, 4), 65535, dtype=np.uint16)
    arr16[0, 0] = 0
    img = load_image(encode(Image.fromarray(arr16), "PNG"))
    out = np.asarray(img)
    assert img.mode == "L" and out[1, 1] == 255 and out[0, 0] == 0


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (6, 6), RED), Image.new("RGB", (6, 6), BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert tuple(np.asarray(load_image(data))[3, 3]) == RED


def test_prepare_pad_keeps_aspect_and_fills():
    x = prepare_image(Image.new("RGB", (100, 50), RED), ImageConfig(size=(64, 64), resize="pad", fill=255))
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0, 32], torch.ones(3))  # top band is padding (white)
    assert torch.allclose(x[:, 32, 32], torch.tensor([1.0, 0.0, 0.0]))  # centre is the picture
    assert torch.allclose(x[:, 63, 32], torch.ones(3))


def test_prepare_crop_takes_the_centre():
    img = Image.new("RGB", (90, 30), BLUE)
    img.paste(Image.new("RGB", (30, 30), RED), (30, 0))  # red centre square
    x = prepare_image(img, ImageConfig(size=(16, 16), resize="crop"))
    assert torch.allclose(x, torch.tensor([1.0, 0.0, 0.0])[:, None, None].expand(3, 16, 16), atol=0.02)


def test_prepare_stretch_fills_the_whole_size():
    x = prepare_image(halves(100, 10), ImageConfig(size=(32, 32), resize="stretch"))
    assert x.shape == (3, 32, 32)
    assert x[0, :, :14].min() > 0.95 and x[2, :, 18:].min() > 0.95  # halves kept left/right


def test_prepare_grayscale_one_channel_and_range():
    x = prepare_image(halves(), ImageConfig(size=(10, 20), mode="L", resize="stretch"))
    assert x.shape == (1, 10, 20) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_prepare_accepts_raw_inputs_with_the_config_cap():
    data = encode(halves(), "PNG")
    assert prepare_image(data, ImageConfig(size=(8, 8))).shape == (3, 8, 8)
    with pytest.raises(InputError):
        prepare_image(data, ImageConfig(size=(8, 8), max_pixels=100))


def test_resize_image_policies_reach_the_size():
    for policy in ("pad", "crop", "stretch"):
        for w, h in [(7, 300), (300, 7), (1, 1)]:
            assert resize_image(Image.new("L", (w, h)), size=(24, 40), policy=policy).size == (40, 24)


def test_image_config_round_trip():
    cfg = ImageConfig(size=(128, 512), mode="L", resize="crop", max_pixels=1000, fill=0)
    assert ImageConfig.from_dict(cfg.to_dict()) == cfg
    assert ImageConfig.from_dict({"size": [3, 4]}).size == (3, 4)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in ImageConfig: sise"):
        ImageConfig.from_dict({"sise": [3, 4]})
    with pytest.raises(ConfigError, match="resize"):
        ImageConfig(resize="zoom")


# --------------------------------------------------------------------------- bad inputs


def test_undecodable_bytes():
    with pytest.raises(InputError) as ei:
        load_image(b"definitely not an image" * 10)
    assert "cannot decode" in one_line_error(ei)


def test_truncated_png(tmp_path):
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    path = tmp_path / "cut.png"
    path.write_bytes(encode(noisy, "PNG")[:400])
    with pytest.raises(InputError) as ei:
        load_image(path)
    assert "cannot decode cut.png" in one_line_error(ei)


def test_empty_bytes_and_file(tmp_path):
    with pytest.raises(InputError) as ei:
        load_image(b"")
    assert "empty" in one_line_error(ei)
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(InputError) as ei:
        load_image(tmp_path / "e.png")
    assert "empty" in one_line_error(ei)


@pytest.mark.parametrize("size", [(0, 10), (10, 0)])
def test_zero_size_file(size):
    # Pillow already refuses a 0-pixel header when opening, so a file reports it as undecodable.
    with pytest.raises(InputError) as ei:
        load_image(bmp_header(*size))
    assert "cannot decode" in one_line_error(ei)


def test_zero_size_array_and_pil():
    with pytest.raises(InputError) as ei:
        load_image(np.zeros((0, 10, 3), np.uint8))
    assert "zero size" in one_line_error(ei)
    with pytest.raises(InputError) as ei:
        load_image(Image.new("RGB", (0, 5)))
    assert "zero size" in one_line_error(ei)


def test_over_cap_is_refused_from_the_header():
    # 10000 x 10000 declared, no pixel data: refused before any decoding is attempted.
    with pytest.raises(InputError) as ei:
        load_image(bmp_header(10_000, 10_000))
    msg = one_line_error(ei)
    assert "100,000,000 pixels" in msg and "limit of 50,000,000" in msg


def test_decompression_bomb_beyond_pillows_own_limit():
    with pytest.raises(InputError) as ei:
        load_image(bmp_header(100_000, 100_000))
    assert "pixels" in one_line_error(ei)


def test_over_cap_is_configurable():
    data = encode(halves(40, 20), "PNG")
    with pytest.raises(InputError) as ei:
        load_image(data, max_pixels=799)
    assert "40x20" in one_line_error(ei)
    assert load_image(data, max_pixels=800).size == (40, 20)


def test_unsupported_format():
    with pytest.raises(InputError) as ei:
        load_image(encode(halves(), "PPM"))
    assert "unsupported image format PPM" in one_line_error(ei)


def test_unsupported_input_type():
    with pytest.raises(InputError) as ei:
        load_image(3.14)
    assert "unsupported image input of type float" in one_line_error(ei)


def test_unsupported_array_shape_and_dtype():
    with pytest.raises(InputError) as ei:
        load_image(np.zeros((2, 4, 4, 3), np.uint8))
    assert "must be (H, W)" in one_line_error(ei)
    with pytest.raises(InputError) as ei:
        load_image(np.zeros((4, 4), np.complex64))
    assert "unsupported image array type" in one_line_error(ei)


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as ei:
        load_image(tmp_path / "nope.png")
    assert "not found" in one_line_error(ei)


# --------------------------------------------------------------------------- exact messages of uploads


def _frames_gif(n: int) -> bytes:
    frames = [Image.new("RGB", (8, 8), (i % 256, (7 * i) % 256, (13 * i) % 256)) for i in range(n)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:])


UPLOADS = {  # file name -> (content, exact message)
    "line.png": (lambda: encode(Image.new("L", (1, 60000), 255), "PNG"),
                 "line.png is 1x60000 pixels, an aspect ratio of 1:60000 (at most 25:1 either way); "
                 "crop it to the part to search with"),
    "strip.png": (lambda: encode(Image.new("L", (3000, 100), 255), "PNG"),
                  "strip.png is 3000x100 pixels, an aspect ratio of 30:1 (at most 25:1 either way); "
                  "crop it to the part to search with"),
    "cut.png": (lambda: encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3),
                                                                              dtype=np.uint8)), "PNG")[:400],
                "cannot decode cut.png (image file is truncated); the file may be damaged"),
    "empty.png": (lambda: b"", "empty.png is empty (0 bytes)"),
    "notes.png": (lambda: b"not an image",
                  "cannot decode notes.png as an image; use PNG, JPEG, WebP, GIF, BMP or TIFF"),
    "x.ico": (lambda: encode(Image.new("RGB", (16, 16)), "ICO"),
              "unsupported image format ICO in x.ico; use PNG, JPEG, WebP, GIF, BMP or TIFF"),
    "big.png": (lambda: encode(Image.new("L", (3000, 2000)), "PNG"),
                "big.png is 3000x2000 = 6,000,000 pixels, over the limit of 5,000,000; downscale it first"),
}


@pytest.mark.parametrize("name", sorted(UPLOADS))
def test_upload_messages_are_exact_and_name_the_file_only(tmp_path, name):
    make, expected = UPLOADS[name]
    folder = tmp_path / "server upload folder" / "7f3a9c"
    folder.mkdir(parents=True)
    (folder / name).write_bytes(make())
    with pytest.raises(InputError) as ei:
        load_image(folder / name, max_pixels=5_000_000, max_aspect=25)
    msg = one_line_error(ei)
    assert msg == expected
    assert str(tmp_path) not in msg and "7f3a9c" not in msg


def test_missing_file_message_is_exact(tmp_path):
    with pytest.raises(InputError) as ei:
        load_image(tmp_path / "nope.png")
    assert one_line_error(ei) == "image file not found: nope.png"


def test_many_frames_give_a_note_and_the_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    path.write_bytes(_frames_gif(500))
    notes: list[str] = []
    img = load_image(path, notes=notes)
    assert notes == ["anim.gif has 500 frames, only the first is used"]
    assert tuple(np.asarray(img)[3, 3]) == (0, 0, 0)


def test_aspect_is_free_without_a_limit_and_a_still_image_has_no_note():
    notes: list[str] = []
    img = load_image(encode(Image.new("L", (1, 600), 255), "PNG"), notes=notes)
    assert img.size == (1, 600) and notes == []
    with pytest.raises(InputError) as ei:
        load_image(np.zeros((2, 100), np.uint8), max_aspect=25)
    assert one_line_error(ei) == ("image is 100x2 pixels, an aspect ratio of 50:1 (at most 25:1 either way); "
                                  "crop it to the part to search with")
