"""Listing ingestion: validate everything first, then write once, idempotently.

`listing_ingest` is the one way a listing enters the system (the API, the CSV import and the
benchmark all call it). A bad input raises `ListingRejected` before any row or file exists.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import warnings
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from PIL import Image, UnidentifiedImageError

from classifier.models import Listing
from classifier.services.audit import audit_record

log = logging.getLogger(__name__)

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
    from PIL import ImageOps

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
        import numpy as np

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


def _clean_text(value: Any, *, field: str, max_length: int, required: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ListingRejected(f"{field}_invalid", f"{field}: must be text", field=field)
    value = value.strip()
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


def listing_fields_validate(
    *, source: Any, external_id: Any, title: Any, description: Any, attributes: Any
) -> dict[str, Any]:
    """The text fields, cleaned; raises ListingRejected naming the first bad field."""
    cleaned = {
        "source": _clean_text(source, field="source", max_length=100, required=True),
        "external_id": _clean_text(external_id, field="external_id", max_length=200, required=True),
        "title": _clean_text(title, field="title", max_length=settings.MAX_TITLE_LENGTH, required=True),
        "description": _clean_text(description, field="description", max_length=10_000, required=False),
    }
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, dict):
        raise ListingRejected(
            "attributes_invalid", "attributes: must be a JSON object of name -> value", field="attributes"
        )
    cleaned["attributes"] = attributes
    return cleaned


def _same_content(listing: Listing, *, title: str, description: str, sha256: str) -> bool:
    return listing.title == title and listing.description == description and listing.image_sha256 == sha256


def _resolve_existing(
    existing: Listing, *, title: str, description: str, sha256: str
) -> tuple[Listing, bool]:
    if _same_content(existing, title=title, description=description, sha256=sha256):
        return existing, False
    differs = [
        name
        for name, same in (
            ("title", existing.title == title),
            ("description", existing.description == description),
            ("image", existing.image_sha256 == sha256),
        )
        if not same
    ]
    raise ListingConflict(
        f"external_id: listing {existing.source}:{existing.external_id} already exists with a different "
        f"{', '.join(differs)}; nothing was changed",
        existing=existing,
    )


# A live "sent" mark says: a classify message for this listing went to the broker recently, so
# the sweeper leaves it alone until the mark expires (settings.CLASSIFY_REDISPATCH_AFTER).
SENT_KEY = "classify:sent:{id}"
# How many times the sweeper already sent a failed listing again.
FAILED_ATTEMPTS_KEY = "classify:failed-attempts:{id}"


def _mark_sent(ids: list[int]) -> None:
    from django.core.cache import cache

    with contextlib.suppress(Exception):  # cache down: the sweeper may send once more, harmless
        cache.set_many({SENT_KEY.format(id=i): 1 for i in ids}, timeout=settings.CLASSIFY_REDISPATCH_AFTER)


def listing_classification_dispatch(*, listing_ids: list[int]) -> None:
    """Queue classification once the current transaction commits (the worker must see the rows).

    Never raises and never blocks for long: when the broker is down the listing stays queued
    and `listings_sweep` sends it later (see `fusionreview.dispatch`).
    """
    if not listing_ids:
        return
    from classifier.tasks.inference import classify_listings
    from fusionreview.dispatch import task_dispatch

    ids = [int(i) for i in listing_ids]
    task_dispatch(classify_listings, args=[ids], after_send=lambda sent: _mark_sent(ids) if sent else None)


@dataclass
class SweepReport:
    """What one sweep sent again, and what it could not send."""

    queued: int = 0
    failed_retried: int = 0
    sent_batches: int = 0
    unsent: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "queued": self.queued,
            "failed_retried": self.failed_retried,
            "sent_batches": self.sent_batches,
            "unsent": self.unsent,
        }


def _without_live_mark(ids: list[int]) -> list[int]:
    from django.core.cache import cache

    if not ids:
        return []
    try:
        marked = cache.get_many([SENT_KEY.format(id=i) for i in ids])
    except Exception:
        log.warning("cache unavailable; the sweeper treats every stuck listing as unsent")
        return ids
    return [i for i in ids if SENT_KEY.format(id=i) not in marked]


def _failed_retryable(ids: list[int]) -> list[int]:
    """Failed listings that have not used up their attempts; counts this attempt."""
    from django.core.cache import cache

    limit = settings.CLASSIFY_FAILED_MAX_ATTEMPTS
    if not ids or limit <= 0:
        return []
    keys = {i: FAILED_ATTEMPTS_KEY.format(id=i) for i in ids}
    try:
        attempts = cache.get_many(list(keys.values()))
    except Exception:
        return []  # without the count a permanent failure would be retried forever: wait for the cache
    chosen = [i for i in ids if int(attempts.get(keys[i], 0)) < limit]
    with contextlib.suppress(Exception):
        cache.set_many({keys[i]: int(attempts.get(keys[i], 0)) + 1 for i in chosen}, timeout=7 * 24 * 3600)
    return chosen


def listings_sweep(
    *, limit: int | None = None, now: Any = None, min_age: float | None = None, respect_marks: bool = True
) -> SweepReport:
    """Send classification again for listings whose message was never sent, lost or stuck.

    Picks (oldest first, at most `limit`):
      - `queued` listings older than SWEEP_MIN_AGE with no live "sent" mark: the broker was
        down at ingest, Redis lost its queue in a restart, or the worker died holding them;
      - `failed` listings unchanged for CLASSIFY_REDISPATCH_AFTER seconds, at most
        CLASSIFY_FAILED_MAX_ATTEMPTS times each (a failure may be a passing one).

    Sending twice is harmless: classification skips a listing that already has a prediction
    from the serving model (and the unique (listing, version) constraint backs that up).
    """
    from datetime import timedelta

    from django.utils import timezone

    from classifier.tasks.inference import classify_listings
    from fusionreview.dispatch import task_publish

    now = now or timezone.now()
    limit = limit or settings.SWEEP_BATCH_LIMIT
    min_age = settings.SWEEP_MIN_AGE if min_age is None else min_age
    queued = list(
        Listing.objects.filter(status=Listing.Status.QUEUED, created_at__lt=now - timedelta(seconds=min_age))
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    if respect_marks:
        queued = _without_live_mark(queued)
    failed = list(
        Listing.objects.filter(
            status=Listing.Status.FAILED,
            updated_at__lt=now - timedelta(seconds=settings.CLASSIFY_REDISPATCH_AFTER),
        )
        .order_by("updated_at", "pk")
        .values_list("pk", flat=True)[: max(0, limit - len(queued))]
    )
    failed = _failed_retryable(_without_live_mark(failed) if respect_marks else failed)
    report = SweepReport(queued=len(queued), failed_retried=len(failed))
    ids = queued + failed
    size = settings.INFERENCE_BATCH_SIZE
    for start in range(0, len(ids), size):
        batch = ids[start : start + size]
        if task_publish(classify_listings, args=[batch]):
            _mark_sent(batch)
            report.sent_batches += 1
        else:
            # The broker is down: the rest would fail the same way; the next sweep tries again.
            report.unsent = len(ids) - start
            break
    if ids:
        log.info("sweep: %s", report.as_dict())
    return report


def listing_ingest(
    *,
    source: str,
    external_id: str,
    title: str,
    description: str = "",
    attributes: dict[str, Any] | None = None,
    image_file: IO[bytes] | bytes | None,
    actor: Any = None,
    dispatch: bool = True,
) -> tuple[Listing, bool]:
    """Validate and store one listing, then queue it for classification.

    Idempotent on (source, external_id): the same content again returns the existing listing
    with created=False; different content raises `ListingConflict` and changes nothing.

    Args:
        source: the marketplace or feed the listing came from.
        external_id: the listing's id in that source.
        title: the product title (stripped; 1..MAX_TITLE_LENGTH characters).
        description: optional free text.
        attributes: optional JSON object (colour, gender, ...).
        image_file: JPEG, PNG or WebP bytes or a file object.
        actor: the user submitting it (None for the system).
        dispatch: queue classification on commit (False lets a bulk caller batch it).

    Returns:
        (listing, created).

    Raises:
        ListingRejected: bad input (nothing written).
        ListingConflict: same (source, external_id), different content (nothing written).
    """
    fields = listing_fields_validate(
        source=source, external_id=external_id, title=title, description=description, attributes=attributes
    )
    image = image_validate(image_file)

    existing = Listing.objects.filter(source=fields["source"], external_id=fields["external_id"]).first()
    if existing is not None:
        return _resolve_existing(
            existing, title=fields["title"], description=fields["description"], sha256=image.sha256
        )

    listing = Listing(
        **fields,
        image_sha256=image.sha256,
        image_width=image.width,
        image_height=image.height,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    # The file is written first (storage is not transactional); any failure below removes it.
    listing.image.save(f"{image.sha256[:20]}.{image.extension}", ContentFile(image.data), save=False)
    try:
        with transaction.atomic():
            listing.save(force_insert=True)
            audit_record(
                actor=actor,
                verb="listing.ingest",
                obj=listing,
                data={"source": listing.source, "external_id": listing.external_id},
            )
    except IntegrityError:
        # A concurrent request inserted the same (source, external_id) between our check and insert.
        listing.image.delete(save=False)
        existing = Listing.objects.filter(source=fields["source"], external_id=fields["external_id"]).first()
        if existing is None:
            raise
        return _resolve_existing(
            existing, title=fields["title"], description=fields["description"], sha256=image.sha256
        )
    except BaseException:
        listing.image.delete(save=False)
        raise
    if dispatch:
        listing_classification_dispatch(listing_ids=[listing.pk])
    return listing, True
