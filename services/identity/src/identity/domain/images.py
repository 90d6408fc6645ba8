"""What an uploaded ID-card image may be (V6): JPEG or PNG by its magic bytes, not its name."""

from __future__ import annotations

JPEG = "image/jpeg"
PNG = "image/png"

_MAGIC = ((b"\xff\xd8\xff", JPEG), (b"\x89PNG\r\n\x1a\n", PNG))


def sniff(data: bytes) -> str | None:
    """The image type the bytes really are, or None."""
    for magic, content_type in _MAGIC:
        if data.startswith(magic):
            return content_type
    return None
