"""The stored copy of an upload is upright, 8-bit, opaque and one frame (issue 13, fault 6).

Phone photos keep their pixels as the sensor read them plus an EXIF Orientation tag; CMYK,
16-bit, palette, alpha and animated images are normalised; the decompression-bomb limit stays.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from classifier.listings.validation import ListingRejected, image_validate
from tests.conftest import jpeg_bytes
from tests.unit.test_listing_validation import png_header_only

# Orientation tag -> how the phone stored an upright picture (the inverse of what a viewer does).
STORED_TURN = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}


def upright_picture() -> Image.Image:
    """80 wide, 60 high: red top half, blue bottom half, a green block top-left."""
    image = Image.new("RGB", (80, 60), (220, 20, 20))
    image.paste((20, 20, 220), (0, 30, 80, 60))
    image.paste((20, 200, 20), (0, 0, 20, 15))
    return image


def phone_jpeg(tag: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = tag
    out = io.BytesIO()
    upright_picture().transpose(STORED_TURN[tag]).save(out, format="JPEG", quality=95, exif=exif.tobytes())
    return out.getvalue()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("tag", [6, 8, 3])
def test_exif_rotated_phone_photo_is_stored_upright_without_the_tag(tag):
    result = image_validate(phone_jpeg(tag))
    stored = decoded(result.data)
    assert (result.width, result.height) == stored.size == (80, 60)
    assert stored.getexif().get(0x0112) in (None, 1)
    pixels = np.asarray(stored.convert("RGB"), dtype=int)
    expected = np.asarray(upright_picture(), dtype=int)
    # JPEG is lossy: compare region colours, not exact bytes.
    assert np.abs(pixels[40:60, 30:80].mean((0, 1)) - expected[40:60, 30:80].mean((0, 1))).max() < 12
    assert np.abs(pixels[2:13, 2:18].mean((0, 1)) - (20, 200, 20)).max() < 20


def test_an_upright_rgb_jpeg_is_stored_byte_for_byte():
    data = jpeg_bytes((64, 80))
    result = image_validate(data)
    assert result.data == data and result.format == "JPEG"


def test_the_hash_is_the_uploads_so_a_repeat_is_recognised():
    import hashlib

    data = phone_jpeg(6)
    assert image_validate(data).sha256 == hashlib.sha256(data).hexdigest()


def test_cmyk_jpeg_becomes_rgb():
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 40, 40)).convert("CMYK").save(out, format="JPEG", quality=95)
    stored = decoded(image_validate(out.getvalue()).data)
    assert stored.mode == "RGB"
    r, g, b = np.asarray(stored, dtype=int).mean((0, 1))
    assert r > 150 and g < 90 and b < 90


def test_sixteen_bit_png_is_scaled_to_eight_bits_not_clipped():
    array = np.full((30, 40), 32768, dtype=np.uint16)  # mid grey in 16 bits
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    assert decoded(out.getvalue()).mode.startswith("I")
    stored = decoded(image_validate(out.getvalue()).data)
    assert stored.mode == "RGB"
    assert abs(np.asarray(stored, dtype=int).mean() - 128) <= 2


def test_palette_png_with_transparency_becomes_rgb_on_white():
    image = Image.new("P", (20, 20), 0)
    image.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    image.paste(1, (10, 0, 20, 20))
    out = io.BytesIO()
    image.save(out, format="PNG", transparency=0)
    stored = np.asarray(decoded(image_validate(out.getvalue()).data), dtype=int)
    assert stored.shape == (20, 20, 3)
    assert tuple(stored[5, 2]) == (255, 255, 255)  # transparent red -> white
    assert tuple(stored[5, 15]) == (0, 0, 255)


def test_alpha_png_is_flattened_on_white():
    image = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    image.paste((0, 128, 0, 255), (0, 0, 10, 20))
    out = io.BytesIO()
    image.save(out, format="PNG")
    stored = np.asarray(decoded(image_validate(out.getvalue()).data), dtype=int)
    assert tuple(stored[5, 15]) == (255, 255, 255)
    assert tuple(stored[5, 2]) == (0, 128, 0)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_animated_image_keeps_its_first_frame(fmt):
    frames = [Image.new("RGB", (24, 24), colour) for colour in ((250, 0, 0), (0, 250, 0), (0, 0, 250))]
    out = io.BytesIO()
    options = {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(out, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **options)
    assert getattr(decoded(out.getvalue()), "n_frames", 1) == 3
    stored = decoded(image_validate(out.getvalue()).data)
    assert getattr(stored, "n_frames", 1) == 1
    r, g, b = np.asarray(stored.convert("RGB"), dtype=int).mean((0, 1))
    assert r > 200 and g < 40 and b < 40


def test_decompression_bomb_limit_is_kept(settings):
    settings.MAX_IMAGE_PIXELS = 1_000_000
    with pytest.raises(ListingRejected) as caught:
        image_validate(png_header_only(20_000, 20_000))
    assert caught.value.code == "image_too_many_pixels"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"%PDF-1.4 not an image at all", "image_not_an_image"),
        (jpeg_bytes((64, 64))[:300], "image_corrupt"),
        (b"", "image_empty"),
    ],
)
def test_bad_files_are_refused_with_a_named_reason(data, code):
    with pytest.raises(ListingRejected) as caught:
        image_validate(data)
    assert caught.value.code == code and caught.value.field == "image"
