"""What an ingest accepts: image checks and normalisation (EXIF upright, RGB, size), text fields."""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from dataclasses import dataclass
from typing import IO, TypedDict

import numpy as np
from django.conf import settings
from PIL import Image, ImageOps, UnidentifiedImageError

from classifier.listings.models import Listing

# PIL format name -> file extension. Everything else is refused.
ALLOWED_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


class ListingRejected(ValueError):
    """A listing that cannot be accepted; nothing was written.

    Attributes:
        code: machine-readable reason ("image_empty", "title_too_long", "conflict", ...).
        message: a sentence for a person, naming the field and the problem.
        field: the input field at fault ("image", "title", ...), or "" for the whole listing.
    """

    def __init__(self, code: str, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class ListingConflict(ListingRejected):
    """(source, external_id) already exists with different content."""

    def __init__(self, message: str, *, existing: Listing) -> None:
        super().__init__("conflict", message, field="external_id")
        self.existing = existing


@dataclass(frozen=True)
class ValidatedImage:
    """An image that decoded fully and passed every limit."""

    data: bytes
    sha256: str
    width: int
    height: int
    format: str  # PIL's name: JPEG, PNG or WEBP

    @property
    def extension(self) -> str:
        return ALLOWED_FORMATS[self.format]


def _read_limited(image_file: IO[bytes] | bytes, limit: int) -> bytes:
    """Read at most limit+1 bytes, so an oversized upload is refused without reading it all."""
    if isinstance(image_file, bytes | bytearray):
        return bytes(image_file[: limit + 1])
    size = getattr(image_file, "size", None)
    if size is not None and size > limit:
        raise ListingRejected(
            "image_too_large",
            f"image: {size:,} bytes is over the limit of {limit:,} bytes",
            field="image",
        )
    if hasattr(image_file, "seek"):
        with contextlib.suppress(OSError, ValueError):
            image_file.seek(0)
    return image_file.read(limit + 1)


def image_validate(image_file: IO[bytes] | bytes | None) -> ValidatedImage:
    """Decode the image completely and check size, format and pixel count.

    Raises:
        ListingRejected: with a code naming the problem.
    """
    if image_file is None:
        raise ListingRejected("image_missing", "image: this field is required", field="image")
    max_bytes = settings.MAX_IMAGE_BYTES
    data = _read_limited(image_file, max_bytes)
    if not data:
        raise ListingRejected("image_empty", "image: the file is empty (0 bytes)", field="image")
    if len(data) > max_bytes:
        raise ListingRejected(
            "image_too_large", f"image: the file is over the limit of {max_bytes:,} bytes", field="image"
        )
    max_pixels = settings.MAX_IMAGE_PIXELS
    # PIL warns (and past twice its own limit, raises) on decompression bombs; both are errors here.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as probe:
                fmt = probe.format or ""
                width, height = probe.size
                # Check the declared size before decoding a single pixel.
                if width * height > max_pixels:
                    raise ListingRejected(
                        "image_too_many_pixels",
                        f"image: {width}x{height} is {width * height:,} pixels, over the limit of {max_pixels:,}",
                        field="image",
                    )
                if fmt not in ALLOWED_FORMATS:
                    raise ListingRejected(
                        "image_unsupported_format",
                        f"image: format {fmt or 'unknown'} is not supported (use JPEG, PNG or WebP)",
                        field="image",
                    )
                probe.verify()
            # verify() leaves the image unusable; decode it again, fully, to catch truncation.
            with Image.open(io.BytesIO(data)) as full:
                full.load()
                stored, width, height = image_normalise(full, data=data, fmt=fmt)
        except ListingRejected:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ListingRejected(
                "image_too_many_pixels",
                f"image: too many pixels (decompression bomb), the limit is {max_pixels:,}",
                field="image",
            ) from None
        except UnidentifiedImageError:
            raise ListingRejected(
                "image_not_an_image", "image: the file is not an image PIL can read", field="image"
            ) from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
            raise ListingRejected(
                "image_corrupt", f"image: the file is corrupt or truncated ({exc})", field="image"
            ) from None
    if width < 1 or height < 1:
        raise ListingRejected("image_corrupt", "image: the image has no pixels", field="image")
    # The hash is the upload's, so the same upload again is recognised as a repeat.
    return ValidatedImage(
        data=stored, sha256=hashlib.sha256(data).hexdigest(), width=width, height=height, format=fmt
    )


# Modes stored as they are; everything else becomes RGB (see image_normalise).
_PLAIN_MODES = {"RGB", "L"}
_EXIF_ORIENTATION = 0x0112


def image_normalise(image: Image.Image, *, data: bytes, fmt: str) -> tuple[bytes, int, int]:
    """The copy to store: upright, 8-bit, opaque, one frame. Returns (bytes, width, height).

    Phones store pixels as the sensor read them and an EXIF Orientation tag telling viewers how
    to turn them; the stored copy is turned upright (and the tag dropped) so every reader --
    the model, the review page, an export -- sees the same picture. CMYK, 16-bit, palette and
    alpha images become 8-bit RGB (transparent areas on white, as a shop page shows them);
    an animated image keeps its first frame. An image already upright, 8-bit RGB/L and still is
    stored byte for byte as uploaded.
    """

    changed = False
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
        image = image.copy()
        changed = True
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # unreadable EXIF: keep the pixels as they are
        orientation = 1
    if orientation not in (None, 1):
        image = ImageOps.exif_transpose(image)
        changed = True
    if image.mode not in _PLAIN_MODES:
        image = _to_rgb(image)
        changed = True
    if not changed:
        return data, image.width, image.height
    out = io.BytesIO()
    if fmt == "JPEG":
        image.save(out, format="JPEG", quality=95)
    elif fmt == "WEBP":
        image.save(out, format="WEBP", quality=95)
    else:
        image.save(out, format="PNG", optimize=False)
    return out.getvalue(), image.width, image.height


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit (or 32-bit) grey: scale the full range down to 8 bits instead of clipping at 255.
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or array.max() > 255 else 255.0
        grey = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "La", "PA") or mode == "RGBa":
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, 1


def _clean_text(raw: object, *, field: str, max_length: int, required: bool) -> str:
    if raw is None:
        raw = ""
    if not isinstance(raw, str):
        raise ListingRejected(f"{field}_invalid", f"{field}: must be text", field=field)
    value = raw.strip()
    if "\x00" in value:
        raise ListingRejected(f"{field}_invalid", f"{field}: must not contain NUL characters", field=field)
    if required and not value:
        raise ListingRejected(f"{field}_empty", f"{field}: must not be empty", field=field)
    if len(value) > max_length:
        raise ListingRejected(
            f"{field}_too_long",
            f"{field}: {len(value):,} characters is over the limit of {max_length:,}",
            field=field,
        )
    return value


class ListingFields(TypedDict):
    source: str
    external_id: str
    title: str
    description: str
    attributes: dict[str, object]


def listing_fields_validate(
    *, source: object, external_id: object, title: object, description: object, attributes: object
) -> ListingFields:
    """The text fields, cleaned; raises ListingRejected naming the first bad field."""
    cleaned_source = _clean_text(source, field="source", max_length=100, required=True)
    cleaned_id = _clean_text(external_id, field="external_id", max_length=200, required=True)
    cleaned_title = _clean_text(title, field="title", max_length=settings.MAX_TITLE_LENGTH, required=True)
    cleaned_text = _clean_text(description, field="description", max_length=10_000, required=False)
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, dict):
        raise ListingRejected(
            "attributes_invalid", "attributes: must be a JSON object of name -> value", field="attributes"
        )
    return {
        "source": cleaned_source,
        "external_id": cleaned_id,
        "title": cleaned_title,
        "description": cleaned_text,
        "attributes": attributes,
    }
