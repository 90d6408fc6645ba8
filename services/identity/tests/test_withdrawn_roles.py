"""A role the national admin withdraws stops working at once: identity bounds every privileged token
by the account's roles and admin region as its database holds them now, without a new token."""

from __future__ import annotations

import uuid
from typing import Any

from identity.testing import PNG_BYTES, Identity
from shared.testing import recorded_statements

ROLES_URL = "/api/v1/admin/accounts/{}/roles"
#: the statement identity's role lookup runs (one primary-key read)
LOOKUP = "SELECT accounts.roles, accounts.admin_region"


async def set_roles(identity: Identity, account_id: str, roles: list[str], region: str | None = None) -> None:
    response = await identity.client.put(
        ROLES_URL.format(account_id),
        json={"roles": roles, "admin_region": region},
        headers=identity.national_admin(),
    )
    assert response.status_code == 200, response.text


async def operator(identity: Identity, roles: list[str], region: str | None = None) -> tuple[str, dict[str, str]]:
    """A signed-up account given ``roles`` and logged in since: (its id, its token's headers)."""
    body, account = await identity.sign_up()
    await set_roles(identity, account["id"], roles, region)
    return account["id"], await identity.headers_for(body)


async def keep_another_national_admin(identity: Identity) -> None:
    """Identity refuses to withdraw the last national admin's role: an account keeps it meanwhile."""
    await operator(identity, ["national_admin"])


async def disclose(identity: Identity, account_id: str, headers: dict[str, str]) -> Any:
    return await identity.client.post(
        f"/api/v1/admin/accounts/{account_id}/id-number-disclosures", json={"reason": "核对身份信息"}, headers=headers
    )


async def test_national_admin_token_stops_disclosing_id_numbers_as_soon_as_the_role_is_withdrawn(
    identity: Identity,
) -> None:
    await keep_another_national_admin(identity)
    body, volunteer = await identity.sign_up(region_code="110105")
    admin_id, old_token = await operator(identity, ["national_admin"])
    shown = await disclose(identity, volunteer["id"], old_token)
    assert shown.status_code == 200, shown.text
    assert shown.json()["id_number"] == body["id_number"]

    await set_roles(identity, admin_id, ["volunteer"])
    refused = await disclose(identity, volunteer["id"], old_token)  # the same token, not yet expired
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    assert body["id_number"] not in refused.text
    cases = await identity.client.get("/api/v1/admin/duplicate-cases", headers=old_token)
    assert (cases.status_code, cases.json()["code"]) == (403, "forbidden")
    audit = await identity.fetch(
        "SELECT count(*) FROM audit_log WHERE action = 'id_number_disclosed' AND actor_id = :a",
        a=uuid.UUID(admin_id),
    )
    assert audit[0][0] == 1  # the refused read left no disclosure


async def test_withdrawn_regional_admin_no_longer_sees_id_card_images(identity: Identity) -> None:
    headers, volunteer_id = await failed_volunteer_with_upload(identity)
    _, admin = await operator(identity, ["regional_admin"], "110000")
    listed = await identity.client.get("/api/v1/admin/id-card-reviews", headers=admin)
    [item] = [i for i in listed.json()["items"] if i["account_id"] == volunteer_id]
    assert (await identity.client.get(str(item["image_url"]), headers=admin)).status_code == 200

    admin_id = (await identity.me(admin))["id"]
    await set_roles(identity, admin_id, ["volunteer"])
    image = await identity.client.get(str(item["image_url"]), headers=admin)
    assert (image.status_code, image.json()["code"]) == (403, "forbidden")
    assert PNG_BYTES not in image.content
    reviews = await identity.client.get("/api/v1/admin/id-card-reviews", headers=admin)
    assert (reviews.status_code, reviews.json()["code"]) == (403, "forbidden")
    decision = await identity.client.post(
        f"/api/v1/admin/id-card-reviews/{item['id']}/decision", json={"approved": True}, headers=admin
    )
    assert (decision.status_code, decision.json()["code"]) == (403, "forbidden")
    assert (await identity.me(headers))["verification"]["status"] == "manual_review"


async def failed_volunteer_with_upload(identity: Identity) -> tuple[dict[str, str], str]:
    """A volunteer of 110105 whose check failed and whose ID-card front waits for review."""
    body, account = await identity.sign_up(real_name="钱验证失败", region_code="110105")
    headers = await identity.headers_for(body)
    await identity.verification(headers, "failed")
    uploaded = await identity.client.post(
        "/api/v1/accounts/me/id-card-images", files={"file": ("front.png", PNG_BYTES, "image/png")}, headers=headers
    )
    assert uploaded.status_code in (200, 201), uploaded.text
    return headers, account["id"]


async def test_admin_moved_to_another_region_acts_there_with_the_old_token_and_a_new_one(
    identity: Identity,
) -> None:
    _, beijing_volunteer = await identity.sign_up(region_code="110105")
    shanghai_body, shanghai_volunteer = await identity.sign_up(region_code="310101")
    admin_body, admin = await identity.sign_up()
    await set_roles(identity, admin["id"], ["regional_admin"], "110000")
    old_token = await identity.headers_for(admin_body)
    assert (await disclose(identity, beijing_volunteer["id"], old_token)).status_code == 200

    await set_roles(identity, admin["id"], ["regional_admin"], "310000")
    moved = await disclose(identity, beijing_volunteer["id"], old_token)
    assert (moved.status_code, moved.json()["code"]) == (403, "disclosure_out_of_region")
    assert (await disclose(identity, shanghai_volunteer["id"], old_token)).status_code == 200

    new_token = await identity.headers_for(admin_body)  # issued after the change: the new region
    assert (await disclose(identity, beijing_volunteer["id"], new_token)).json()["code"] == "disclosure_out_of_region"
    shown = await disclose(identity, shanghai_volunteer["id"], new_token)
    assert shown.status_code == 200, shown.text
    assert shown.json()["id_number"] == shanghai_body["id_number"]


async def test_token_issued_after_a_withdrawal_carries_the_new_roles_and_a_role_granted_again_works(
    identity: Identity,
) -> None:
    await keep_another_national_admin(identity)
    _, volunteer = await identity.sign_up(region_code="110105")
    admin_body, admin = await identity.sign_up()
    await set_roles(identity, admin["id"], ["national_admin"])
    old_token = await identity.headers_for(admin_body)
    await set_roles(identity, admin["id"], ["volunteer"])
    new_token = await identity.headers_for(admin_body)
    assert (await identity.me(new_token))["roles"] == ["volunteer"]
    for token in (old_token, new_token):
        assert (await disclose(identity, volunteer["id"], token)).status_code == 403

    await set_roles(identity, admin["id"], ["national_admin"])
    assert (await disclose(identity, volunteer["id"], old_token)).status_code == 200  # the role is held again
    assert (await disclose(identity, volunteer["id"], new_token)).status_code == 403  # never carried it


async def test_volunteer_requests_never_look_up_roles(identity: Identity) -> None:
    body, _ = await identity.sign_up()
    volunteer = await identity.headers_for(body)
    _, admin = await operator(identity, ["national_admin"])
    with recorded_statements(identity.runtime.engine) as seen:
        assert (await identity.client.get("/api/v1/accounts/me", headers=volunteer)).status_code == 200
        assert (await identity.client.get("/api/v1/admin/duplicate-cases", headers=volunteer)).status_code == 403
    assert [s for s in seen if s.startswith(LOOKUP)] == []
    with recorded_statements(identity.runtime.engine) as seen:
        assert (await identity.client.get("/api/v1/admin/duplicate-cases", headers=admin)).status_code == 200
    assert len([s for s in seen if s.startswith(LOOKUP)]) == 1
