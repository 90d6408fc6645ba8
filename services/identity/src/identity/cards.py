"""The electronic volunteer service card (V9): a PDF to print and a PNG for the phone.

The QR code holds a URL to the public verification endpoint with a signed token made only of
the card's id (a random UUID) and an HMAC: no personal data. The endpoint says whether the
card is genuine (the signature holds and the card exists) and current (not replaced, and the
volunteer still verified), showing only the masked name and the volunteer number.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import hmac
import io
import uuid
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from urllib.parse import urlencode

import qrcode
from PIL import Image, ImageDraw, ImageFont
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

from identity import errors
from identity.bootstrap import IdentityRuntime
from identity.crypto import derive_key
from identity.domain.documents import mask_name
from identity.models import Account, VolunteerCard
from identity.repository import Accounts, Cards
from identity.verification import STATUS_VERIFIED
from shared.clock import local_today
from shared.db import UnitOfWork
from shared.errors import AppError
from shared.logging import get_logger

log = get_logger("identity.cards")

TITLE_ZH = "志愿服务证"
TITLE_EN = "Volunteer Service Card"
_MAC_BYTES = 16


@dataclass(frozen=True)
class CardFace:
    name: str
    volunteer_number: str
    issued_on: date
    verify_url: str


@dataclass(frozen=True)
class CardCheck:
    genuine: bool
    current: bool = False
    masked_name: str | None = None
    volunteer_number: str | None = None
    issued_on: date | None = None


def _mac(runtime: IdentityRuntime, card_id: uuid.UUID) -> bytes:
    key = derive_key(runtime.settings, b"volunteer-card")
    return hmac.new(key, card_id.bytes, hashlib.sha256).digest()[:_MAC_BYTES]


def card_token(runtime: IdentityRuntime, card_id: uuid.UUID) -> str:
    raw = card_id.bytes + _mac(runtime, card_id)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _card_id(runtime: IdentityRuntime, token: str) -> uuid.UUID | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        return None
    if len(raw) != 16 + _MAC_BYTES:
        return None
    card_id = uuid.UUID(bytes=raw[:16])
    return card_id if hmac.compare_digest(raw[16:], _mac(runtime, card_id)) else None


async def current_card(
    runtime: IdentityRuntime, uow: UnitOfWork, account_id: uuid.UUID, *, renew: bool = False
) -> CardFace:
    """The volunteer's current card (issued on first request; ``renew`` replaces it).

    One card is current at a time: issuing and replacing happen under the account's row lock
    (simultaneous first requests see the card the first one issued), a renewal revokes every
    card not yet revoked, and a partial unique index (``ux_volunteer_cards_current``) backs both."""
    accounts, cards = Accounts(uow.session), Cards(uow.session)
    account = await accounts.get(account_id)
    if account is None:
        raise AppError(errors.ACCOUNT_NOT_FOUND)
    if account.verification_status != STATUS_VERIFIED or account.volunteer_number is None or account.record is None:
        raise AppError(errors.CARD_REQUIRES_VERIFICATION)
    card = None if renew else await cards.current_for(account.id)
    now = uow.clock.now()
    if card is None:
        await accounts.get(account.id, for_update=True)
        if renew:
            await cards.revoke_current(account.id, now)
        else:
            card = await cards.current_for(account.id)  # issued by a request that held the lock
    if card is None:
        card = VolunteerCard(id=uuid.uuid4(), account_id=account.id, issued_on=local_today(uow.clock), issued_at=now)
        cards.add(card)
        log.info("volunteer_card_issued", account_id=str(account.id), card_id=str(card.id))
    url = runtime.settings.card_verification_url
    separator = "&" if "?" in url else "?"
    return CardFace(
        name=account.record.real_name,
        volunteer_number=account.volunteer_number,
        issued_on=card.issued_on,
        verify_url=url + separator + urlencode({"token": card_token(runtime, card.id)}),
    )


async def check(runtime: IdentityRuntime, uow: UnitOfWork, token: str) -> CardCheck:
    card_id = _card_id(runtime, token)
    card = await Cards(uow.session).get(card_id) if card_id is not None else None
    if card is None:
        return CardCheck(genuine=False)
    account: Account | None = await Accounts(uow.session).get(card.account_id)
    if account is None or account.record is None:
        return CardCheck(genuine=False)
    current = card.revoked_at is None and account.verification_status == STATUS_VERIFIED
    return CardCheck(
        genuine=True,
        current=current,
        masked_name=mask_name(account.record.real_name),
        volunteer_number=account.volunteer_number,
        issued_on=card.issued_on,
    )


# -- rendering ----------------------------------------------------------------------------------
def _qr_image(url: str) -> Image.Image:
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8, border=2)
    qr.add_data(url)
    qr.make(fit=True)
    image: Image.Image = qr.make_image(fill_color="black", back_color="white").get_image().convert("RGB")
    return image


def render_pdf(face: CardFace) -> bytes:
    """ID-1 size (85.6 × 54 mm), photo-free; Chinese in the PDF's built-in Song font."""
    font = "STSong-Light"
    if font not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(font))
    width, height = 85.6 * mm, 54 * mm
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=(width, height))
    pdf.setTitle(TITLE_ZH)
    pdf.setFillColorRGB(0.75, 0.1, 0.1)
    pdf.rect(0, height - 12 * mm, width, 12 * mm, stroke=0, fill=1)
    pdf.setFillColorRGB(1, 1, 1)
    pdf.setFont(font, 13)
    pdf.drawString(5 * mm, height - 8 * mm, f"{TITLE_ZH}  {TITLE_EN}")
    pdf.setFillColorRGB(0, 0, 0)
    pdf.setFont(font, 11)
    pdf.drawString(5 * mm, height - 21 * mm, f"姓名 Name: {face.name}")
    pdf.drawString(5 * mm, height - 29 * mm, f"志愿者编号 No.: {face.volunteer_number}")
    pdf.drawString(5 * mm, height - 37 * mm, f"发证日期 Issued: {face.issued_on.isoformat()}")
    pdf.setFont(font, 7)
    pdf.drawString(5 * mm, 4 * mm, "扫描二维码核验真伪 Scan to verify")
    qr = _qr_image(face.verify_url)
    pdf.drawImage(ImageReader(qr), width - 33 * mm, 4 * mm, 29 * mm, 29 * mm)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


_FONT_GLOBS = (
    "/usr/share/fonts/**/*[Ww]qy*.tt[cf]",
    "/usr/share/fonts/**/*[Nn]oto*CJK*.tt[cf]",
    "/usr/share/fonts/**/*[Nn]oto*CJK*.otf",
    "/usr/share/fonts/**/*[Ss]ource[Hh]an*.otf",
    "/usr/share/fonts/**/*[Dd]roid*[Ff]allback*.ttf",
)


@lru_cache(maxsize=4)
def find_font(configured: str | None) -> str | None:
    """The font the phone card's image is drawn with: the configured one, else an installed font
    with Chinese glyphs; None when there is none (names would show as boxes)."""
    if configured:
        return configured
    for pattern in _FONT_GLOBS:
        found = sorted(glob.glob(pattern, recursive=True))
        if found:
            return found[0]
    return None


def _font(path: str | None, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if path:
        return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)


def render_png(face: CardFace, *, font_path: str | None = None) -> bytes:
    """1012 × 638 pixels (ID-1 at 300 dpi). Needs a font with Chinese glyphs
    (``IDENTITY_CARD_FONT_PATH`` or an installed WenQuanYi/Noto CJK) for the name."""
    path = find_font(font_path)
    if path is None:
        log.warning("card_font_missing", hint="install fonts-wqy-microhei or set IDENTITY_CARD_FONT_PATH")
    image = Image.new("RGB", (1012, 638), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 1012, 140), fill=(191, 26, 26))
    title = f"{TITLE_ZH}  {TITLE_EN}" if path else TITLE_EN
    draw.text((50, 45), title, fill="white", font=_font(path, 52))
    body = _font(path, 40)
    name_label = "姓名 Name" if path else "Name"
    draw.text((50, 200), f"{name_label}: {face.name}", fill="black", font=body)
    draw.text((50, 290), f"{'志愿者编号 ' if path else ''}No.: {face.volunteer_number}", fill="black", font=body)
    draw.text((50, 380), f"{'发证日期 ' if path else ''}Issued: {face.issued_on.isoformat()}", fill="black", font=body)
    draw.text((50, 560), "Scan to verify", fill=(90, 90, 90), font=_font(path, 28))
    qr = _qr_image(face.verify_url).resize((310, 310))
    image.paste(qr, (672, 230))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
