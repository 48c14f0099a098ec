"""Catalogue loading, image decoding/resizing, vague titles and the training-time caches."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class InvalidImageError(ValueError):
    """The image bytes could not be decoded as a picture."""


MAX_IMAGE_PIXELS = 40_000_000  # a decompression bomb is refused, not decoded


def load_image(src: bytes | bytearray | memoryview | str | os.PathLike[str] | Image.Image) -> Image.Image:
    """A PIL RGB image from bytes, a path or a PIL image; raises :class:`InvalidImageError`."""
    try:
        if isinstance(src, Image.Image):
            img = src
        elif isinstance(src, (bytes, bytearray, memoryview)):
            if len(src) == 0:
                raise InvalidImageError("empty image")
            img = Image.open(io.BytesIO(bytes(src)))
        else:
            img = Image.open(src)
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise InvalidImageError(f"image too large ({img.width}x{img.height})")
        img.load()
        # phone photos carry their orientation in EXIF: show them the way the seller saw them
        return ImageOps.exif_transpose(img).convert("RGB")
    except InvalidImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InvalidImageError(f"cannot decode image: {e}") from e


def pad_square(img: Image.Image) -> Image.Image:
    """Pad to a white square, centred (catalogue photos have white backgrounds): the aspect is kept."""
    w, h = img.size
    if w == h:
        return img
    s = max(w, h)
    canvas = Image.new("RGB", (s, s), (255, 255, 255))
    canvas.paste(img, ((s - w) // 2, (s - h) // 2))
    return canvas


def image_to_array(img: Image.Image, size: int, pad: bool = True) -> np.ndarray:
    """White-padded to square (``pad``; else squashed, as v1 did), resized -> uint8 [3, size, size]."""
    if pad:
        img = pad_square(img)
    a = np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    return cast("np.ndarray", a.transpose(2, 0, 1).copy())


WHITE_LEVEL = 235  # a pixel whose three channels are all at least this is studio background (JPEG noise < 20)


@dataclass
class Row:
    id: str
    title: str
    master_category: str
    sub_category: str
    article_type: str
    split: str
    image: str
    gender: str = ""

    @property
    def leaf_id(self) -> str:
        return f"{self.master_category} > {self.sub_category} > {self.article_type}"


def read_catalogue(csv_path: str | Path, splits: tuple[str, ...] | None = None) -> list[Row]:
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = []
        for r in csv.DictReader(f):
            if splits and r.get("split") not in splits:
                continue
            rows.append(
                Row(
                    r["id"],
                    r.get("title", ""),
                    r.get("master_category", ""),
                    r.get("sub_category", ""),
                    r.get("article_type", ""),
                    r.get("split", ""),
                    r.get("image", f"images/{r['id']}.jpg"),
                    r.get("gender", ""),
                )
            )
    return rows


def find_data_dir() -> Path | None:
    """The fashion data folder: $FUSION_DATA_DIR, else ../shared/data/fashion beside the repository."""
    env = os.environ.get("FUSION_DATA_DIR")
    cands = [Path(env)] if env else []
    repo = Path(__file__).resolve().parents[2]
    cands += [repo / "../shared/data/fashion", repo.parent / "shared/data/fashion"]
    for c in cands:
        if (c / "catalogue.csv").exists():
            return c.resolve()
    return None


def _stem(w: str) -> str:
    return w.lower().rstrip("s").replace("-", "")


def vague_titles(rows: list[Row], vocabulary: list[Row]) -> dict[str, str]:
    """id -> title without category words (the same rule as ``shared/tools/vague_titles.py``)."""
    words = set()
    for r in vocabulary:
        for f in (r.master_category, r.sub_category, r.article_type):
            words |= {_stem(w) for w in re.findall(r"[A-Za-z\-]+", f) if len(w) > 2}
    return {
        r.id: " ".join(w for w in r.title.split() if _stem(re.sub(r"[^A-Za-z\-]", "", w)) not in words)
        for r in rows
    }


def vague_titles_via_tool(data_dir: Path, out_csv: Path) -> dict[str, str] | None:
    """Run the shared tool (full catalogue as vocabulary) when it is there; id -> vague title."""
    tool = (data_dir / "../../tools/vague_titles.py").resolve()
    if not tool.exists():
        return None
    cat = data_dir / "catalogue.csv"
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(tool), str(cat), str(out_csv), str(cat)], check=True)
    return {r.id: r.title for r in read_catalogue(out_csv)}


def load_image_arrays(
    rows: list[Row],
    base: Path,
    size: int,
    cache: Path | None = None,
    desc: str = "images",
    pad: bool = True,
) -> np.ndarray:
    """uint8 [n, 3, size, size] for the rows (cached as .npy keyed by ids, size and ``pad``: white-padded
    to square, else squashed as v1 was)."""
    from tqdm import tqdm

    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        digest = hashlib.md5(",".join(r.id for r in rows).encode()).hexdigest()[:12]
        key = cache / f"img{size}{'' if pad else 'sq'}_{len(rows)}_{digest}.npy"
        if key.exists():
            return cast("np.ndarray", np.load(key))
    out: np.ndarray = np.zeros((len(rows), 3, size, size), dtype=np.uint8)
    for i, r in enumerate(tqdm(rows, desc=f"{desc} {size}px", leave=False)):
        out[i] = image_to_array(load_image(base / r.image), size, pad)
    if cache is not None:
        np.save(key, out)
    return out
