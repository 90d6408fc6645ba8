"""What an uploaded ID-card image may be (V6): JPEG or PNG by its magic bytes, not its name, that
decodes whole as that format within a pixel budget; what is kept is a fresh encoding of the pixels.

The magic bytes alone let anything follow them (an HTML page after a PNG signature), and a PNG of
a few kilobytes may declare 20 000 × 20 000 pixels, which decoding would spread over gigabytes. The
dimensions are read from the header and refused before any pixel is decoded; an image that does
not decode to its end (truncated, corrupt, another format behind the signature) is refused. The
copy kept is re-encoded from the pixels (PNG as PNG, JPEG as JPEG at quality 90): nothing of the
upload's bytes but its picture reaches a reviewer, and its metadata (EXIF: the phone's GPS
position, the time) is dropped. EXIF's orientation is applied to the pixels first, so the card is
kept the way up the phone showed it.
"""

from __future__ import annotations

import contextlib
import io

from PIL import Image, ImageOps, UnidentifiedImageError

from identity import errors
from shared.errors import AppError, Localised

JPEG = "image/jpeg"
PNG = "image/png"

_MAGIC = ((b"\xff\xd8\xff", JPEG), (b"\x89PNG\r\n\x1a\n", PNG))
#: Pillow's name of each format, which is the only decoder it may try
_FORMAT = {JPEG: "JPEG", PNG: "PNG"}
#: the modes each encoder writes as they are; any other is converted first
_KEEPS_MODE = {"JPEG": {"L", "RGB", "CMYK"}, "PNG": {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}}


def sniff(data: bytes) -> str | None:
    """The image type the bytes claim to be, or None."""
    for magic, content_type in _MAGIC:
        if data.startswith(magic):
            return content_type
    return None


def reencoded(data: bytes, *, max_pixels: int, max_side: int) -> tuple[str, bytes]:
    """(content type, the image encoded afresh), or a refusal: ``id_card_image_type`` for what is
    not wholly a JPEG or PNG, ``id_card_image_too_many_pixels`` past the budget. CPU-bound (up
    to a second on a large photo): run it off the event loop."""
    content_type = sniff(data)
    if content_type is None:
        raise AppError(errors.ID_CARD_IMAGE_TYPE)
    fmt = _FORMAT[content_type]
    too_big = AppError(
        errors.ID_CARD_IMAGE_TOO_MANY_PIXELS,
        {"max_pixels": max_pixels, "max_side": max_side},
        # Chinese counts pixels in 万 (4000万像素), English in millions (40 million)
        params={"max_pixels": _pixels_said(max_pixels), "max_side": max_side},
    )
    out = io.BytesIO()
    try:
        # (Pillow warns of a bomb from 89 million pixels and refuses one from 179 million, on its
        # global limit, when it opens the file; the budget is checked before anything is decoded)
        with Image.open(io.BytesIO(data), formats=[fmt]) as image:
            width, height = image.size  # from the header: nothing decoded yet
            if width * height > max_pixels or max(width, height) > max_side:
                raise too_big
            image.load()  # every pixel: a truncated or corrupt image raises here
            with contextlib.suppress(Exception):  # EXIF broken past reading: kept the way it is stored
                ImageOps.exif_transpose(image, in_place=True)
            picture = image if image.mode in _KEEPS_MODE[fmt] else _convertible(image)
            # none of the upload's metadata: encoders copy a JPEG's comment and a PNG's
            # colour profile over unless told otherwise, and EXIF only when given it
            if fmt == "JPEG":
                picture.save(out, format="JPEG", quality=90, comment=b"")
            else:
                picture.save(out, format="PNG", icc_profile=None)
    except Image.DecompressionBombError:
        raise too_big from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        # UnidentifiedImageError: not this format at all; OSError: truncated or corrupt data;
        # the others: chunks or markers Pillow's parsers reject
        raise AppError(errors.ID_CARD_IMAGE_TYPE) from exc
    return content_type, out.getvalue()


def _pixels_said(pixels: int) -> Localised:
    zh = f"{pixels // 10_000}万" if pixels >= 10_000 else str(pixels)
    en = f"{pixels / 1_000_000:g} million" if pixels >= 1_000_000 else str(pixels)
    return Localised(zh, en)


def _convertible(image: Image.Image) -> Image.Image:
    return image.convert("RGBA" if "A" in image.getbands() else "RGB")
