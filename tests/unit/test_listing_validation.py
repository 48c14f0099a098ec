"""Image and text validation of incoming listings: every bad input gets a clear, named refusal."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from classifier.listings.validation import ListingRejected, image_validate, listing_fields_validate
from tests.conftest import jpeg_bytes


def png_bytes(size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but carries one tiny IDAT: a decompression-bomb header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def rejected(data) -> ListingRejected:
    with pytest.raises(ListingRejected) as info:
        image_validate(data)
    return info.value


def test_a_good_jpeg_png_and_webp_pass_with_size_and_checksum():
    jpeg = jpeg_bytes((64, 80))
    ok = image_validate(jpeg)
    assert (ok.width, ok.height, ok.format, ok.extension) == (64, 80, "JPEG", "jpg")
    assert len(ok.sha256) == 64
    assert image_validate(png_bytes()).format == "PNG"
    webp = io.BytesIO()
    Image.new("RGB", (20, 20)).save(webp, format="WEBP")
    assert image_validate(webp.getvalue()).format == "WEBP"


def test_zero_byte_image_is_refused_as_empty():
    err = rejected(b"")
    assert err.code == "image_empty" and err.field == "image" and "empty" in err.message


def test_oversized_image_is_refused_naming_the_limit(settings):
    settings.MAX_IMAGE_BYTES = 2048
    err = rejected(jpeg_bytes((400, 400), (1, 2, 3)) + b"\x00" * 4096)
    assert err.code == "image_too_large" and "2,048" in err.message


def test_text_pretending_to_be_an_image_is_refused():
    err = rejected(b"hello, I am not a picture at all" * 10)
    assert err.code == "image_not_an_image"


def test_truncated_jpeg_is_refused_as_corrupt():
    data = jpeg_bytes((300, 300), (120, 30, 200))
    err = rejected(data[: len(data) // 2])
    assert err.code == "image_corrupt"


def test_garbled_png_is_refused_as_corrupt():
    data = bytearray(png_bytes((60, 60)))
    data[60:90] = b"\xff" * 30  # inside IDAT: the CRC and the zlib stream break
    err = rejected(bytes(data))
    assert err.code in {"image_corrupt", "image_not_an_image"}


def test_decompression_bomb_is_refused_before_decoding(settings):
    settings.MAX_IMAGE_PIXELS = 1_000_000
    err = rejected(png_header_only(20_000, 20_000))
    assert err.code == "image_too_many_pixels" and "1,000,000" in err.message


def test_gif_and_bmp_are_unsupported_formats():
    for fmt in ("GIF", "BMP"):
        buffer = io.BytesIO()
        Image.new("RGB", (10, 10)).save(buffer, format=fmt)
        err = rejected(buffer.getvalue())
        assert err.code == "image_unsupported_format" and fmt in err.message


def fields(**overrides):
    values = {
        "source": "shop",
        "external_id": "1",
        "title": "Puma Men Blue Tshirt",
        "description": "",
        "attributes": None,
    }
    values.update(overrides)
    return listing_fields_validate(**values)


def test_title_is_stripped_and_empty_title_refused():
    assert fields(title="  Puma Tee  ")["title"] == "Puma Tee"
    with pytest.raises(ListingRejected) as info:
        fields(title="   \n ")
    assert info.value.code == "title_empty" and info.value.field == "title"


def test_title_over_the_limit_names_the_limit(settings):
    settings.MAX_TITLE_LENGTH = 300
    with pytest.raises(ListingRejected) as info:
        fields(title="x" * 10_000)
    assert (
        info.value.code == "title_too_long" and "300" in info.value.message and "10,000" in info.value.message
    )


def test_source_and_external_id_are_required_and_attributes_must_be_an_object():
    for name in ("source", "external_id"):
        with pytest.raises(ListingRejected) as info:
            fields(**{name: ""})
        assert info.value.field == name
    with pytest.raises(ListingRejected) as info:
        fields(attributes=["not", "a", "dict"])
    assert info.value.field == "attributes"
