"""The volunteer card (V9): PDF and PNG for verified volunteers, QR with a signed token and no
personal data, public verification showing the masked name and the number."""

from __future__ import annotations

import asyncio
import base64
import io
import uuid
from typing import Any

import pytest
import sqlalchemy.exc
from PIL import Image
from sqlalchemy import text

from identity.cards import CardFace, card_token, render_png
from identity.testing import Identity
from shared.testing import assert_valid_html

#: what Chrome and Firefox send when a phone's camera opens a scanned QR code's URL
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


async def verified(identity: Identity, name: str = "黄志愿") -> tuple[dict[str, Any], dict[str, str], str]:
    body, _account = await identity.sign_up(real_name=name)
    headers = await identity.headers_for(body)
    me = await identity.verification(headers, "verified")
    return body, headers, me["verification"]["volunteer_number"]


async def current_token(identity: Identity, account_id: str) -> str:
    rows = await identity.fetch(
        "SELECT id FROM volunteer_cards WHERE account_id = :a AND revoked_at IS NULL", a=uuid.UUID(account_id)
    )
    [(card_id,)] = rows
    return card_token(identity.runtime, card_id)


async def test_card_is_only_for_verified_volunteers(identity: Identity) -> None:
    body, _ = await identity.sign_up(real_name="黄验证失败")
    headers = await identity.headers_for(body)
    await identity.verification(headers, "failed")
    for path in ("/api/v1/accounts/me/card.pdf", "/api/v1/accounts/me/card.png"):
        response = await identity.client.get(path, headers=headers)
        assert response.status_code == 409
        assert response.json()["code"] == "card_requires_verification"
        assert response.json()["message"] == "通过实名认证后才能领取志愿服务证"


async def test_verified_volunteer_gets_a_pdf_and_a_png_card(identity: Identity) -> None:
    _, headers, _ = await verified(identity)
    pdf = await identity.client.get("/api/v1/accounts/me/card.pdf", headers=headers)
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    png = await identity.client.get("/api/v1/accounts/me/card.png", headers=headers)
    assert png.status_code == 200
    image = Image.open(io.BytesIO(png.content))
    assert (image.format, image.size) == ("PNG", (1012, 638))
    # Both show the same card: asking twice issues no second card.
    me = await identity.me(headers)
    rows = await identity.fetch("SELECT count(*) FROM volunteer_cards WHERE account_id = :a", a=uuid.UUID(me["id"]))
    assert rows[0][0] == 1


async def test_scanned_card_shows_only_the_masked_name_and_the_number(identity: Identity) -> None:
    body, headers, number = await verified(identity, "黄志愿")
    me = await identity.me(headers)
    await identity.client.get("/api/v1/accounts/me/card.png", headers=headers)
    token = await current_token(identity, me["id"])
    # The token is the card id and a signature: no name, number or ID number inside.
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert len(raw) == 32
    for secret in (body["id_number"], number, "黄志愿", body["mobile"]):
        assert secret.encode() not in raw
        assert secret not in token
    check = await identity.client.get("/api/v1/card-verifications", params={"token": token})
    assert check.status_code == 200
    assert check.json() == {
        "genuine": True,
        "current": True,
        "masked_name": "黄**",
        "volunteer_number": number,
        "issued_on": check.json()["issued_on"],
    }


async def test_a_phone_that_scans_the_card_gets_a_page_saying_the_same(identity: Identity) -> None:
    body, headers, number = await verified(identity, "黄志愿")
    me = await identity.me(headers)
    await identity.client.get("/api/v1/accounts/me/card.png", headers=headers)
    token = await current_token(identity, me["id"])
    url = "/api/v1/card-verifications"

    page = await identity.client.get(url, params={"token": token}, headers=BROWSER)
    english = await identity.client.get(url, params={"token": token}, headers={**BROWSER, "Accept-Language": "en"})
    forged = await identity.client.get(
        url, params={"token": card_token(identity.runtime, uuid.uuid4())}, headers=BROWSER
    )
    api = await identity.client.get(url, params={"token": token})

    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert_valid_html(page.text)
    assert "此志愿服务证真实有效" in page.text
    assert "黄**" in page.text
    assert number in page.text
    assert "Chrome" in page.text  # the recommended browsers (X3)
    for secret in (body["id_number"], "黄志愿", body["mobile"], body["email"], body["username"]):
        assert secret not in page.text
    assert_valid_html(english.text)
    assert '<html lang="en">' in english.text
    assert "genuine and current" in english.text
    assert_valid_html(forged.text)
    assert "无法核验" in forged.text
    assert number not in forged.text
    for garbled in ({"token": token[:7]}, {"token": "not a token!"}, {}):  # a QR code read wrong, a cut link
        cut = await identity.client.get(url, params=garbled, headers=BROWSER)
        assert (cut.status_code, "无法核验" in cut.text) == (200, True)
        assert (await identity.client.get(url, params=garbled)).json()["genuine"] is False
    assert api.headers["content-type"] == "application/json"  # API clients still get JSON
    assert (api.headers["cache-control"], api.headers["vary"]) == ("no-store", "Accept, Accept-Language")


async def test_a_forged_token_is_not_genuine(identity: Identity) -> None:
    _, headers, _ = await verified(identity)
    me = await identity.me(headers)
    await identity.client.get("/api/v1/accounts/me/card.pdf", headers=headers)
    token = await current_token(identity, me["id"])
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-1] ^= 1
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    check = (await identity.client.get("/api/v1/card-verifications", params={"token": forged})).json()
    assert check == {
        "genuine": False,
        "current": False,
        "masked_name": None,
        "volunteer_number": None,
        "issued_on": None,
    }
    made_up = card_token(identity.runtime, uuid.uuid4())  # well signed, never issued
    assert (await identity.client.get("/api/v1/card-verifications", params={"token": made_up})).json()[
        "genuine"
    ] is False


async def test_a_replaced_card_is_genuine_but_no_longer_current(identity: Identity) -> None:
    _, headers, _ = await verified(identity)
    me = await identity.me(headers)
    await identity.client.get("/api/v1/accounts/me/card.pdf", headers=headers)
    old = await current_token(identity, me["id"])
    renewed = await identity.client.post("/api/v1/accounts/me/cards", headers=headers)
    assert renewed.status_code == 204
    new = await current_token(identity, me["id"])
    assert new != old
    old_check = (await identity.client.get("/api/v1/card-verifications", params={"token": old})).json()
    assert (old_check["genuine"], old_check["current"]) == (True, False)
    old_page = await identity.client.get("/api/v1/card-verifications", params={"token": old}, headers=BROWSER)
    assert_valid_html(old_page.text)
    assert "已失效" in old_page.text
    new_check = (await identity.client.get("/api/v1/card-verifications", params={"token": new})).json()
    assert (new_check["genuine"], new_check["current"]) == (True, True)


async def current_cards(identity: Identity, account_id: str) -> int:
    rows = await identity.fetch(
        "SELECT count(*) FROM volunteer_cards WHERE account_id = :a AND revoked_at IS NULL", a=uuid.UUID(account_id)
    )
    return int(rows[0][0])


async def test_simultaneous_first_card_requests_issue_one_current_card(identity: Identity) -> None:
    _, headers, _ = await verified(identity)
    me = await identity.me(headers)

    responses = await asyncio.gather(
        *(identity.client.get("/api/v1/accounts/me/card.png", headers=headers) for _ in range(8))
    )

    assert [r.status_code for r in responses] == [200] * 8
    assert len({r.content for r in responses}) == 1  # one card, one QR code
    assert await current_cards(identity, me["id"]) == 1


async def test_a_renewal_leaves_every_earlier_card_no_longer_current_even_when_renewed_at_once(
    identity: Identity,
) -> None:
    _, headers, _ = await verified(identity)
    me = await identity.me(headers)
    await identity.client.get("/api/v1/accounts/me/card.pdf", headers=headers)

    renewals = await asyncio.gather(
        *(identity.client.post("/api/v1/accounts/me/cards", headers=headers) for _ in range(6))
    )

    assert [r.status_code for r in renewals] == [204] * 6
    assert await current_cards(identity, me["id"]) == 1
    current = await current_token(identity, me["id"])
    rows = await identity.fetch("SELECT id FROM volunteer_cards WHERE account_id = :a", a=uuid.UUID(me["id"]))
    assert len(rows) == 7
    for (card_id,) in rows:
        token = card_token(identity.runtime, card_id)
        check = (await identity.client.get("/api/v1/card-verifications", params={"token": token})).json()
        assert (check["genuine"], check["current"]) == (True, token == current)


async def test_the_database_refuses_a_second_current_card(identity: Identity) -> None:
    _, headers, _ = await verified(identity)
    me = await identity.me(headers)
    await identity.client.get("/api/v1/accounts/me/card.pdf", headers=headers)
    with pytest.raises(sqlalchemy.exc.IntegrityError, match="ux_volunteer_cards_current"):
        async with identity.runtime.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO volunteer_cards (id, account_id, issued_on, issued_at) "
                    "VALUES (gen_random_uuid(), :a, current_date, now())"
                ),
                {"a": uuid.UUID(me["id"])},
            )


def test_png_card_renders_without_a_chinese_font_installed() -> None:
    from datetime import date

    face = CardFace(
        name="黄志愿", volunteer_number="VS00000000018", issued_on=date(2026, 1, 5), verify_url="http://x/?t=1"
    )
    data = render_png(face, font_path=None)
    assert data.startswith(b"\x89PNG")
