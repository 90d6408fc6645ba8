"""What an uploaded ID-card image must be (V6): the JPEG or PNG its magic bytes claim, decoded to
its end within a pixel budget; what a reviewer gets is a fresh encoding of its picture, without
the upload's metadata (a phone photo's EXIF holds where it was taken)."""

from __future__ import annotations

import io
import struct
import time
import zlib

import httpx
from PIL import Image

from identity.testing import PNG_BYTES, Identity, StartIdentity, jpeg_bytes, picture

UPLOAD = "/api/v1/accounts/me/id-card-images"


def png_declaring(width: int, height: int, *, rows: int = 4, after_end: bytes = b"") -> bytes:
    """A greyscale PNG whose header declares ``width`` × ``height`` while its data holds only
    ``rows`` rows: a few kilobytes that a decoder trusting the header spreads over width × height
    bytes (20 000 × 20 000: 400 MB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * (1 + width) * rows, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"") + after_end


async def failed_volunteer(identity: Identity) -> dict[str, str]:
    body, _ = await identity.sign_up(real_name="陈验证失败", region_code="110105")
    headers = await identity.headers_for(body)
    await identity.verification(headers, "failed")
    return headers


async def upload(identity: Identity, headers: dict[str, str], data: bytes, name: str = "front.png") -> httpx.Response:
    return await identity.client.post(UPLOAD, files={"file": (name, data, "image/png")}, headers=headers)


async def reviewed_image(identity: Identity, upload_id: str) -> httpx.Response:
    admin = identity.regional_admin("110000")
    response = await identity.client.get(f"/api/v1/admin/id-card-reviews/{upload_id}/image", headers=admin)
    assert response.status_code == 200, response.text
    return response


async def test_a_page_behind_a_png_signature_is_refused(identity: Identity) -> None:
    headers = await failed_volunteer(identity)
    html = b"\x89PNG\r\n\x1a\n<html><body><script>alert(document.domain)</script></body></html>"
    response = await upload(identity, headers, html)
    assert (response.status_code, response.json()["code"]) == (415, "id_card_image_type")


async def test_truncated_images_are_refused(identity: Identity) -> None:
    headers = await failed_volunteer(identity)
    photo = jpeg_bytes((64, 48))
    for broken in (photo[: len(photo) // 2], PNG_BYTES[:45]):
        response = await upload(identity, headers, broken, "front.jpg")
        assert (response.status_code, response.json()["code"]) == (415, "id_card_image_type")


async def test_an_image_declaring_more_pixels_than_the_budget_is_refused_before_decoding(identity: Identity) -> None:
    headers = await failed_volunteer(identity)
    for width, height in ((20_000, 20_000), (7_000, 7_000), (10_001, 10)):
        bomb = png_declaring(width, height)
        assert len(bomb) < 64 * 1024
        started = time.monotonic()
        response = await upload(identity, headers, bomb)
        assert time.monotonic() - started < 2  # nothing was decoded
        assert (response.status_code, response.json()["code"]) == (413, "id_card_image_too_many_pixels")
        assert response.json()["detail"] == {"max_pixels": 40_000_000, "max_side": 10_000}
    assert (await identity.me(headers))["verification"]["status"] == "failed"  # nothing kept


async def test_the_pixel_budget_is_a_setting(start_identity: StartIdentity) -> None:
    async with start_identity(id_card_max_pixels=2_000_000, id_card_max_side=1_000) as identity:
        headers = await failed_volunteer(identity)
        too_wide = await upload(identity, headers, jpeg_bytes((1_001, 8)), "front.jpg")
        assert too_wide.json()["code"] == "id_card_image_too_many_pixels"
        assert too_wide.json()["message"] == "身份证件照片尺寸过大,请缩小到200万像素、每边1000像素以内"
        english = await upload(identity, {**headers, "Accept-Language": "en"}, jpeg_bytes((1_001, 8)), "front.jpg")
        assert (
            english.json()["message"] == "The ID-card image is too big: at most 2 million pixels and 1000 pixels a side"
        )
        assert (await upload(identity, headers, jpeg_bytes((1_000, 8)), "front.jpg")).status_code == 201


async def test_the_reviewer_gets_the_picture_without_the_uploads_metadata(identity: Identity) -> None:
    headers = await failed_volunteer(identity)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the phone was held on its side
    exif[0x8825] = {1: "N", 2: (39.0, 54.0, 27.0), 3: "E", 4: (116.0, 23.0, 17.0)}  # where it was taken
    photo = jpeg_bytes((64, 48), exif=exif, comment=b"<script>alert(1)</script>")
    with Image.open(io.BytesIO(photo)) as original:
        assert original.getexif().get_ifd(0x8825)  # the upload does carry a position

    uploaded = await upload(identity, headers, photo, "front.jpg")
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["content_type"] == "image/jpeg"
    image = await reviewed_image(identity, uploaded.json()["id"])

    assert image.headers["content-type"] == "image/jpeg"
    assert image.headers["x-content-type-options"] == "nosniff"
    assert b"<script>" not in image.content
    with Image.open(io.BytesIO(image.content)) as kept:
        assert (kept.format, kept.size) == ("JPEG", (48, 64))  # turned the way up the phone showed it
        assert dict(kept.getexif()) == {}
        assert "comment" not in kept.info
    assert uploaded.json()["size"] == len(image.content)


async def test_bytes_after_a_png_end_do_not_reach_the_reviewer(identity: Identity) -> None:
    headers = await failed_volunteer(identity)
    smuggled = PNG_BYTES + b"<html><script>alert(document.domain)</script></html>"
    uploaded = await upload(identity, headers, smuggled)
    assert uploaded.status_code == 201, uploaded.text
    image = await reviewed_image(identity, uploaded.json()["id"])
    assert b"<script>" not in image.content
    assert picture(image.content) == picture(PNG_BYTES)
    assert image.headers["x-content-type-options"] == "nosniff"
