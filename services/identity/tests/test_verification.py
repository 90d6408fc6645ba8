"""Real-name verification and volunteer numbers (V5), manual verification (V6), unmasked reads."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import pytest

from identity.domain import numbers
from identity.domain.working_days import add_working_days
from identity.repository import Accounts
from identity.testing import JPEG_BYTES, PNG_BYTES, Identity, ScriptedProvider, StartIdentity, picture
from identity.verification import apply_outcome, verify_due
from shared.testing import TEST_OVERRIDES, SmtpServer, eventually, running


# -- pure rules -----------------------------------------------------------------------------
def test_volunteer_numbers_carry_a_check_digit_that_catches_typos() -> None:
    number = numbers.render(1)
    assert number == "VS00000000018"
    assert numbers.is_valid(number)
    assert not numbers.is_valid("VS00000000019")
    assert not numbers.is_valid("VS00000000108")  # transposed digits
    assert len({numbers.render(n) for n in range(1, 1000)}) == 999


def test_expected_dates_skip_chinese_holidays_and_count_swapped_workdays() -> None:
    # National Day 2025: 1–8 October off; Saturday 11 October is a working day.
    assert add_working_days(date(2025, 9, 30), 3) == date(2025, 10, 11)
    assert add_working_days(date(2025, 9, 26), 1) == date(2025, 9, 28)  # a working Sunday


# -- V5 -------------------------------------------------------------------------------------
async def test_verified_volunteer_gets_a_national_number_and_volunteer_verified_is_raised(identity: Identity) -> None:
    body, account = await identity.sign_up(real_name="王小明")
    headers = await identity.headers_for(body)
    me = await identity.verification(headers, "verified")
    number = me["verification"]["volunteer_number"]
    assert numbers.is_valid(number)
    assert body["id_number"][6:14] not in number  # the birth date is not in it
    [event] = await identity.events("volunteer.verified", account["id"])
    assert event["volunteer_number"] == number
    assert event["masked_name"] == "王**"
    assert event["manual"] is False
    assert [e["status"] for e in await identity.events("volunteer.verification_changed", account["id"])] == ["verified"]


async def test_volunteer_numbers_are_unique_and_assigned_only_once(identity: Identity) -> None:
    signed = [await identity.sign_up() for _ in range(3)]
    found = []
    for body, _ in signed:
        me = await identity.verification(await identity.headers_for(body), "verified")
        found.append(me["verification"]["volunteer_number"])
    assert len(set(found)) == 3
    account_id = uuid.UUID(signed[0][1]["id"])
    async with identity.runtime.uow() as uow:
        account = await Accounts(uow.session).get(account_id, for_update=True)
        assert account is not None
        await apply_outcome(uow, account, "verified", None, manual=True)
        assert account.volunteer_number == found[0]


async def test_failed_verification_is_shown_with_its_reason(identity: Identity) -> None:
    body, account = await identity.sign_up(real_name="李验证失败")
    me = await identity.verification(await identity.headers_for(body), "failed")
    assert me["verification"]["reason"]
    assert me["verification"]["volunteer_number"] is None
    assert me["verification"]["id_card_upload"] == "needed"
    [event] = await identity.events("volunteer.verification_changed", account["id"])
    assert (event["status"], event["manual"]) == ("failed", False)


async def test_provider_can_ask_for_manual_review_and_the_volunteer_is_told_to_upload_the_id_card(
    identity: Identity,
) -> None:
    """A provider's "manual review" is decided by a regional admin from the ID card's front: the
    status says the upload is needed (and notifications emails it), then that it waits for review."""
    body, account = await identity.sign_up(real_name="周人工复核")
    headers = await identity.headers_for(body)
    me = await identity.verification(headers, "manual_review")
    assert me["verification"]["expected_by"] is not None
    assert me["verification"]["id_card_upload"] == "needed"
    [event] = await identity.events("volunteer.verification_changed", account["id"])
    assert (event["status"], event["manual"]) == ("manual_review", False)
    uploaded = await identity.client.post(
        "/api/v1/accounts/me/id-card-images", files={"file": ("front.png", PNG_BYTES, "image/png")}, headers=headers
    )
    assert uploaded.status_code == 201, uploaded.text
    assert (await identity.me(headers))["verification"]["id_card_upload"] == "waiting_for_review"
    assert await pending_review(identity, identity.regional_admin("110105"), account["id"]) is not None
    search = {"username": body["username"], "reason": "核对实名认证进度"}
    found = await identity.client.post("/api/v1/admin/account-searches", json=search, headers=identity.national_admin())
    assert found.json()["items"][0]["verification"]["id_card_upload"] == "waiting_for_review"  # admins see the same


async def test_check_waits_for_its_due_time_on_the_clock(start_identity: StartIdentity) -> None:
    async with start_identity(verification_delay_seconds=3 * 24 * 3600) as identity:
        body, _ = await identity.sign_up()
        headers = await identity.headers_for(body)
        assert await verify_due(identity.runtime) == 0
        assert (await identity.me(headers))["verification"]["status"] == "pending"
        identity.clock.advance(days=3, seconds=1)
        await identity.verification(await identity.headers_for(body), "verified")


async def test_provider_outage_is_retried_later_without_an_outcome(start_identity: StartIdentity) -> None:
    async with start_identity(verification_retry_seconds=600) as identity:
        _body, account = await identity.sign_up(real_name="吴核验超时")

        async def attempted() -> bool:
            rows = await identity.fetch(
                "SELECT verification_attempts FROM accounts WHERE id = :i", i=uuid.UUID(account["id"])
            )
            return bool(rows[0][0] >= 1)

        await eventually(attempted, timeout=30)
        [row] = await identity.fetch(
            "SELECT verification_status, verification_due_at FROM accounts WHERE id = :i", i=uuid.UUID(account["id"])
        )
        assert row[0] == "pending"
        assert row[1] > identity.clock.now()
        assert await identity.events("volunteer.verification_changed", account["id"]) == []


# -- V6 -------------------------------------------------------------------------------------
async def failed_volunteer(identity: Identity, region: str = "110105") -> tuple[dict[str, str], str]:
    body, account = await identity.sign_up(real_name="陈验证失败", region_code=region)
    headers = await identity.headers_for(body)
    await identity.verification(headers, "failed")
    return headers, account["id"]


async def test_failed_volunteer_uploads_the_id_card_and_waits_for_manual_review(identity: Identity) -> None:
    headers, account_id = await failed_volunteer(identity)
    response = await identity.client.post(
        "/api/v1/accounts/me/id-card-images", files={"file": ("front.png", PNG_BYTES, "image/png")}, headers=headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["content_type"] == "image/png"
    me = await identity.me(headers)
    assert me["verification"]["status"] == "manual_review"
    [row] = await identity.fetch(
        "SELECT image_ciphertext FROM id_card_uploads WHERE account_id = :a", a=uuid.UUID(account_id)
    )
    assert PNG_BYTES[8:] not in bytes(row[0])  # encrypted at rest
    statuses = [e["status"] for e in await identity.events("volunteer.verification_changed", account_id)]
    assert statuses == ["failed", "manual_review"]


async def test_upload_is_refused_while_verification_has_not_failed(identity: Identity) -> None:
    body, _ = await identity.sign_up()
    headers = await identity.headers_for(body)
    await identity.verification(headers, "verified")
    response = await identity.client.post(
        "/api/v1/accounts/me/id-card-images", files={"file": ("front.png", PNG_BYTES, "image/png")}, headers=headers
    )
    assert response.status_code == 409
    assert response.json()["code"] == "id_card_upload_not_needed"


async def test_upload_must_really_be_a_jpeg_or_png(identity: Identity) -> None:
    headers, _ = await failed_volunteer(identity)
    response = await identity.client.post(
        "/api/v1/accounts/me/id-card-images",
        files={"file": ("front.jpg", b"%PDF-1.4 not an image at all", "image/jpeg")},
        headers=headers,
    )
    assert response.status_code == 415
    assert response.json()["code"] == "id_card_image_type"
    jpeg = await identity.client.post(
        "/api/v1/accounts/me/id-card-images",
        files={"file": ("x.bin", JPEG_BYTES, "application/octet-stream")},
        headers=headers,
    )
    assert jpeg.status_code == 201
    assert jpeg.json()["content_type"] == "image/jpeg"


async def test_upload_over_the_size_limit_is_refused(start_identity: StartIdentity) -> None:
    async with start_identity(id_card_max_bytes=2048) as identity:
        headers, _ = await failed_volunteer(identity)
        response = await identity.client.post(
            "/api/v1/accounts/me/id-card-images",
            files={"file": ("big.png", PNG_BYTES + b"\x00" * 4096, "image/png")},
            headers=headers,
        )
    assert response.status_code == 413
    assert response.json()["code"] == "id_card_image_too_large"
    assert response.json()["message"] == "身份证件照片不能超过2KB"


async def pending_review(identity: Identity, admin: dict[str, str], account_id: str) -> dict[str, object] | None:
    page = (await identity.client.get("/api/v1/admin/id-card-reviews", headers=admin, params={"limit": 200})).json()
    return next((item for item in page["items"] if item["account_id"] == account_id), None)


async def test_regional_admin_of_the_volunteers_region_approves_and_a_number_is_assigned(identity: Identity) -> None:
    headers, account_id = await failed_volunteer(identity, region="110105")
    await identity.client.post(
        "/api/v1/accounts/me/id-card-images", files={"file": ("front.png", PNG_BYTES, "image/png")}, headers=headers
    )
    admin_id = uuid.uuid4()
    beijing = identity.regional_admin("110000", admin_id)
    item = await pending_review(identity, beijing, account_id)
    assert item is not None
    assert item["real_name"] == "陈验证失败"
    image = await identity.client.get(str(item["image_url"]), headers=beijing)
    assert image.status_code == 200
    assert picture(image.content) == picture(PNG_BYTES)  # kept re-encoded: the same picture
    assert image.headers["content-type"] == "image/png"
    viewed = await identity.fetch(
        "SELECT actor_id FROM audit_log WHERE action = 'id_card_image_viewed' AND subject_account_id = :s",
        s=uuid.UUID(account_id),
    )
    assert [r[0] for r in viewed] == [admin_id]

    decision = await identity.client.post(
        f"/api/v1/admin/id-card-reviews/{item['id']}/decision", json={"approved": True}, headers=beijing
    )
    assert decision.status_code == 200, decision.text
    me = await identity.me(headers)
    assert me["verification"]["status"] == "verified"
    assert numbers.is_valid(me["verification"]["volunteer_number"])
    [event] = await identity.events("volunteer.verified", account_id)
    assert event["manual"] is True
    again = await identity.client.post(
        f"/api/v1/admin/id-card-reviews/{item['id']}/decision", json={"approved": True}, headers=beijing
    )
    assert again.json()["code"] == "review_already_decided"


async def test_admin_of_another_region_can_neither_see_nor_decide(identity: Identity) -> None:
    headers, account_id = await failed_volunteer(identity, region="110105")
    await identity.client.post(
        "/api/v1/accounts/me/id-card-images", files={"file": ("front.png", PNG_BYTES, "image/png")}, headers=headers
    )
    item = await pending_review(identity, identity.national_admin(), account_id)
    assert item is not None
    shanghai = identity.regional_admin("310000")
    assert await pending_review(identity, shanghai, account_id) is None
    image = await identity.client.get(str(item["image_url"]), headers=shanghai)
    assert image.status_code == 403
    decision = await identity.client.post(
        f"/api/v1/admin/id-card-reviews/{item['id']}/decision", json={"approved": True}, headers=shanghai
    )
    assert decision.status_code == 403
    assert decision.json()["code"] == "review_out_of_region"
    volunteer = await identity.client.get("/api/v1/admin/id-card-reviews", headers=headers)
    assert volunteer.status_code == 403


async def test_regional_admin_cannot_review_their_own_id_card_upload(identity: Identity) -> None:
    """An admin who is also a volunteer of the region: their own upload is neither listed, shown
    nor decided by them; another admin of the region still reviews it."""
    headers, account_id = await failed_volunteer(identity, region="110105")
    await identity.client.post(
        "/api/v1/accounts/me/id-card-images", files={"file": ("front.png", PNG_BYTES, "image/png")}, headers=headers
    )
    item = await pending_review(identity, identity.national_admin(), account_id)
    assert item is not None
    # identity bounds a token's roles by the account's: the volunteer really is an admin (of both kinds)
    granted = await identity.client.put(
        f"/api/v1/admin/accounts/{account_id}/roles",
        json={"roles": ["regional_admin", "national_admin"], "admin_region": "110000"},
        headers=identity.national_admin(),
    )
    assert granted.status_code == 200, granted.text
    own = identity.regional_admin("110000", uuid.UUID(account_id))
    assert await pending_review(identity, own, account_id) is None
    image = await identity.client.get(str(item["image_url"]), headers=own)
    assert image.status_code == 403
    assert image.json()["code"] == "review_own_upload"
    url = f"/api/v1/admin/id-card-reviews/{item['id']}/decision"
    for who in (own, identity.national_admin(uuid.UUID(account_id))):
        decision = await identity.client.post(url, json={"approved": True}, headers=who)
        assert decision.status_code == 403
        assert decision.json()["code"] == "review_own_upload"
    english = await identity.client.post(url, json={"approved": True}, headers={**own, "Accept-Language": "en"})
    assert english.json()["message"].startswith("You cannot review your own ID-card upload")
    assert (await identity.me(headers))["verification"]["status"] == "manual_review"
    assert await identity.events("volunteer.verified", account_id) == []
    viewed = await identity.fetch(
        "SELECT count(*) FROM audit_log WHERE action = 'id_card_image_viewed' AND subject_account_id = :s",
        s=uuid.UUID(account_id),
    )
    assert viewed[0][0] == 0

    approved = await identity.client.post(url, json={"approved": True}, headers=identity.regional_admin("110105"))
    assert approved.status_code == 200, approved.text
    assert (await identity.me(headers))["verification"]["status"] == "verified"


async def upload_awaiting_review(identity: Identity) -> tuple[dict[str, str], Any, dict[str, str], dict[str, Any]]:
    """A volunteer whose automatic check failed, their ID-card upload, and the regional admin who
    sees it waiting: (volunteer headers, account id, admin headers, review item)."""
    headers, account_id = await failed_volunteer(identity)
    await identity.client.post(
        "/api/v1/accounts/me/id-card-images", files={"file": ("front.png", PNG_BYTES, "image/png")}, headers=headers
    )
    admin = identity.regional_admin("110105")
    item = await pending_review(identity, admin, account_id)
    assert item is not None
    return headers, account_id, admin, item


async def test_a_name_changed_while_the_id_card_awaits_review_withdraws_the_upload_so_it_is_never_approved(
    identity: Identity,
) -> None:
    """The admin saw 陈验证失败 and the card; the volunteer then renamed the account. The rename
    withdraws the upload, so the admin cannot approve a name they never saw; the new name goes
    through the automatic check like any corrected name."""
    headers, account_id, admin, item = await upload_awaiting_review(identity)
    assert item["real_name"] == "陈验证失败"

    renamed = await identity.client.patch("/api/v1/accounts/me", json={"real_name": "王冒名验证失败"}, headers=headers)
    assert renamed.status_code == 200, renamed.text
    decision = await identity.client.post(
        f"/api/v1/admin/id-card-reviews/{item['id']}/decision", json={"approved": True}, headers=admin
    )

    assert decision.status_code == 409
    assert decision.json()["code"] == "review_superseded"
    assert await pending_review(identity, admin, account_id) is None
    me = await identity.verification(headers, "failed")  # the new name, checked automatically
    assert (me["real_name"], me["verification"]["volunteer_number"]) == ("王冒名验证失败", None)
    assert await identity.events("volunteer.verified", account_id) == []
    statuses = [e["status"] for e in await identity.events("volunteer.verification_changed", account_id)]
    assert statuses == ["failed", "manual_review", "pending", "failed"]


async def test_a_decision_and_a_name_change_at_the_same_moment_never_approve_the_new_name(identity: Identity) -> None:
    for _ in range(3):
        headers, account_id, admin, item = await upload_awaiting_review(identity)

        decision, renamed = await asyncio.gather(
            identity.client.post(
                f"/api/v1/admin/id-card-reviews/{item['id']}/decision", json={"approved": True}, headers=admin
            ),
            identity.client.patch("/api/v1/accounts/me", json={"real_name": "王冒名验证失败"}, headers=headers),
        )

        outcome = (decision.json().get("code"), renamed.json().get("code"))
        if decision.status_code == 200:  # approved first: the name it approved is locked
            assert (renamed.status_code, outcome[1]) == (409, "name_locked_after_verification")
            assert (await identity.me(headers))["real_name"] == "陈验证失败"
        else:  # renamed first: the upload was withdrawn
            assert (decision.status_code, renamed.status_code, outcome[0]) == (409, 200, "review_superseded")
            assert await identity.events("volunteer.verified", account_id) == []


async def test_rejection_needs_a_reason_and_is_raised_as_failed(identity: Identity) -> None:
    headers, account_id, admin, item = await upload_awaiting_review(identity)
    url = f"/api/v1/admin/id-card-reviews/{item['id']}/decision"
    no_reason = await identity.client.post(url, json={"approved": False}, headers=admin)
    assert no_reason.json()["code"] == "rejection_reason_required"
    rejected = await identity.client.post(url, json={"approved": False, "reason": "照片模糊,无法辨认"}, headers=admin)
    assert rejected.status_code == 200
    me = await identity.me(headers)
    assert (me["verification"]["status"], me["verification"]["reason"]) == ("failed", "照片模糊,无法辨认")
    last = (await identity.events("volunteer.verification_changed", account_id))[-1]
    assert (last["status"], last["manual"], last["reason"]) == ("failed", True, "照片模糊,无法辨认")


async def test_a_rejection_reason_of_the_full_allowed_length_is_kept_whole(identity: Identity) -> None:
    # the decision allows 500 characters; the account's copy once held 200 and a longer one was a 500
    headers, account_id, admin, item = await upload_awaiting_review(identity)
    reason = "照片不清晰,请重新拍摄身份证正面。" * 29 + "谢谢您的配合。"  # 500 characters
    assert len(reason) == 500
    url = f"/api/v1/admin/id-card-reviews/{item['id']}/decision"
    too_long = await identity.client.post(url, json={"approved": False, "reason": reason + "。"}, headers=admin)
    assert (too_long.status_code, too_long.json()["code"]) == (422, "validation_failed")
    rejected = await identity.client.post(url, json={"approved": False, "reason": reason}, headers=admin)
    assert rejected.status_code == 200, rejected.text
    assert (await identity.me(headers))["verification"]["reason"] == reason
    assert (await identity.events("volunteer.verification_changed", account_id))[-1]["reason"] == reason


@pytest.mark.slow
async def test_review_outcome_is_emailed_through_notifications(
    identity: Identity,
    amqp_url: str,
    database_factory: Callable[[str], Awaitable[str]],
    smtp_server: SmtpServer,
) -> None:
    from notifications.bootstrap import build_runtime as build_notifications
    from notifications.config import NotificationsSettings
    from notifications.main import create_app as notifications_app

    settings = NotificationsSettings(
        database_url=await database_factory("notifications"),
        amqp_url=amqp_url,
        smtp_port=smtp_server.port,
        mail_poll_interval=0.2,
        **TEST_OVERRIDES,
    )
    async with running(notifications_app(settings, build_notifications(settings))):
        address = f"review-{uuid.uuid4().hex[:8]}@example.org"
        body, account = await identity.sign_up(real_name="郑验证失败", email=address)
        headers = await identity.headers_for(body)
        await identity.verification(headers, "failed")
        await identity.client.post(
            "/api/v1/accounts/me/id-card-images", files={"file": ("f.png", PNG_BYTES, "image/png")}, headers=headers
        )
        admin = identity.regional_admin("110000")
        item = await pending_review(identity, admin, account["id"])
        assert item is not None
        await identity.client.post(
            f"/api/v1/admin/id-card-reviews/{item['id']}/decision", json={"approved": True}, headers=admin
        )
        number = (await identity.me(headers))["verification"]["volunteer_number"]
        mails = await smtp_server.wait_for(lambda m: address in m.rcpt_tos and number in m.text(), timeout=45)
    assert mails


# -- unmasked reads -------------------------------------------------------------------------
async def test_unmasked_id_number_needs_an_admin_and_a_reason_and_is_audited(identity: Identity) -> None:
    body, account = await identity.sign_up(region_code="110105")
    url = f"/api/v1/admin/accounts/{account['id']}/id-number-disclosures"
    volunteer = await identity.client.post(url, json={"reason": "核对身份"}, headers=await identity.headers_for(body))
    assert volunteer.status_code == 403
    no_reason = await identity.client.post(url, json={}, headers=identity.national_admin())
    assert no_reason.status_code == 422
    elsewhere = await identity.client.post(
        url, json={"reason": "核对身份信息"}, headers=identity.regional_admin("310000")
    )
    assert elsewhere.json()["code"] == "disclosure_out_of_region"
    admin_id = uuid.uuid4()
    shown = await identity.client.post(
        url, json={"reason": "核对重复记录"}, headers=identity.regional_admin("110100", admin_id)
    )
    assert shown.status_code == 200, shown.text
    assert shown.json()["id_number"] == body["id_number"]
    audit = await identity.fetch(
        "SELECT actor_id, reason FROM audit_log WHERE action = 'id_number_disclosed' AND subject_account_id = :s",
        s=uuid.UUID(account["id"]),
    )
    assert [tuple(r) for r in audit] == [(admin_id, "核对重复记录")]


async def test_operators_plug_in_their_provider_by_setting(start_identity: StartIdentity) -> None:
    async with start_identity(verification_provider="identity.testing:scripted_provider") as identity:
        provider = identity.runtime.verification_provider
        assert isinstance(provider, ScriptedProvider)
        body, _ = await identity.sign_up(real_name="钱验证失败")  # the development rules no longer apply
        await identity.verification(await identity.headers_for(body), "verified")
    [request] = provider.requests
    assert (request.document_type, request.id_number, request.real_name) == (
        "resident_id",
        body["id_number"],
        "钱验证失败",
    )


async def test_a_provider_that_does_not_answer_in_time_is_retried_later(start_identity: StartIdentity) -> None:
    async with start_identity(
        verification_provider="identity.testing:scripted_provider",
        verification_timeout_seconds=0.2,
        verification_retry_seconds=600,
    ) as identity:
        provider = identity.runtime.verification_provider
        assert isinstance(provider, ScriptedProvider)
        provider.delay = 5
        _, account = await identity.sign_up()

        async def attempted() -> bool:
            rows = await identity.fetch(
                "SELECT verification_attempts, verification_status FROM accounts WHERE id = :i",
                i=uuid.UUID(account["id"]),
            )
            return bool(rows[0][0] >= 1 and rows[0][1] == "pending")

        await eventually(attempted, timeout=30)


async def test_an_id_card_image_is_deleted_once_decided_or_withdrawn(identity: Identity) -> None:
    """V6: the image is shown only to those reviewing it. Once decided (or withdrawn by a name
    change) it is deleted: no admin of the region, one appointed later included, opens it again."""
    headers, account_id, admin, item = await upload_awaiting_review(identity)
    decided = await identity.client.post(
        f"/api/v1/admin/id-card-reviews/{item['id']}/decision",
        json={"approved": False, "reason": "照片模糊"},
        headers=admin,
    )
    assert decided.status_code == 200, decided.text
    later_admin = identity.regional_admin("110105")
    image = await identity.client.get(str(item["image_url"]), headers=later_admin)
    assert (image.status_code, image.json()["code"]) == (409, "review_already_decided")

    # the volunteer uploads again; a name change then withdraws that upload
    again = await identity.client.post(
        "/api/v1/accounts/me/id-card-images", files={"file": ("front.png", PNG_BYTES, "image/png")}, headers=headers
    )
    assert again.status_code == 201, again.text
    second = await pending_review(identity, admin, account_id)
    assert second is not None
    renamed = await identity.client.patch("/api/v1/accounts/me", json={"real_name": "王改名验证失败"}, headers=headers)
    assert renamed.status_code == 200, renamed.text
    withdrawn = await identity.client.get(str(second["image_url"]), headers=later_admin)
    assert (withdrawn.status_code, withdrawn.json()["code"]) == (409, "review_superseded")

    kept = await identity.fetch(
        "SELECT status, image_ciphertext IS NULL, reviewed_by IS NOT NULL FROM id_card_uploads "
        "WHERE account_id = :a ORDER BY uploaded_at",
        a=uuid.UUID(account_id),
    )
    assert [tuple(r) for r in kept] == [("rejected", True, True), ("superseded", True, False)]


async def test_correcting_only_the_middle_dot_of_a_failed_name_is_stored_and_checked_again(
    start_identity: StartIdentity,
) -> None:
    """Names match a record whatever dot separates their parts; a correction the volunteer asks
    for is still a correction: stored as written and checked again."""
    async with start_identity(dev_verification_rules={"\u2022": "failed"}) as identity:
        body, _ = await identity.sign_up(real_name="阿依古丽\u2022买买提")
        headers = await identity.headers_for(body)
        await identity.verification(headers, "failed")
        patched = await identity.client.patch(
            "/api/v1/accounts/me", json={"real_name": "阿依古丽·买买提"}, headers=headers
        )
        assert patched.status_code == 200, patched.text
        me = await identity.verification(headers, "verified")
        assert me["real_name"] == "阿依古丽·买买提"
