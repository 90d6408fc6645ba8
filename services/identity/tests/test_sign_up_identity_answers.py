"""Sign-up's answers about an ID number (V2–V4): ``id_number_already_registered``,
``imported_name_mismatch`` and the like tell whoever asks whether someone's number is registered,
or the name an imported record has. They come only to a sign-up that would otherwise create the
account (the username is checked first: a taken one learns nothing), and only so often per
client address."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import httpx

from identity.testing import Identity, StartIdentity, add_imported_record
from shared.testing import resident_id, sign_up_body


async def test_a_sign_up_with_a_taken_username_learns_nothing_about_the_id_number(identity: Identity) -> None:
    victim, _ = await identity.sign_up()
    mine, _ = await identity.sign_up()
    imported = resident_id(birth=date(1976, 6, 6))
    await add_imported_record(identity, imported, "王秀英")
    before = (await identity.fetch("SELECT count(*) FROM accounts"))[0][0]
    probes = (
        (victim["id_number"], "猜名字"),  # registered
        (resident_id(birth=date(1961, 3, 3)), "猜名字"),  # not registered
        (imported, "张伟"),  # imported, another name
        (imported, "王秀英"),  # imported, its name
    )
    for username in (mine["username"], mine["username"].upper()):  # taken ignoring case, as the index
        for number, name in probes:
            response = await identity.client.post(
                "/api/v1/accounts", json=sign_up_body(id_number=number, real_name=name, username=username)
            )
            assert (response.status_code, response.json()["code"]) == (409, "username_taken"), (number, name)
    assert (await identity.fetch("SELECT count(*) FROM accounts"))[0][0] == before


async def test_the_answers_still_come_to_a_sign_up_that_would_create_the_account(identity: Identity) -> None:
    victim, _ = await identity.sign_up()
    registered = await identity.client.post("/api/v1/accounts", json=sign_up_body(id_number=victim["id_number"]))
    assert registered.json()["code"] == "id_number_already_registered"
    assert "way_out" in registered.json()["detail"]  # V2's way out, as SPEC requires
    imported = resident_id(birth=date(1977, 7, 7))
    await add_imported_record(identity, imported, "王秀英")
    wrong = await identity.client.post("/api/v1/accounts", json=sign_up_body(id_number=imported, real_name="张伟"))
    assert wrong.json()["code"] == "imported_name_mismatch"


def from_address(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def sign_up_from(identity: Identity, address: str, **overrides: Any) -> httpx.Response:
    return await identity.client.post("/api/v1/accounts", json=sign_up_body(**overrides), headers=from_address(address))


async def test_identity_answers_are_limited_per_client_address(start_identity: StartIdentity) -> None:
    async with start_identity(trust_forwarded_for=True, sign_up_identity_refusals_per_hour=3) as identity:
        victim, _ = await identity.sign_up()
        imported = resident_id(birth=date(1978, 8, 8))
        await add_imported_record(identity, imported, "王秀英")
        prober = "203.0.113.50"
        answers = [
            (await sign_up_from(identity, prober, id_number=victim["id_number"])).json()["code"],
            (await sign_up_from(identity, prober, id_number=imported, real_name="张伟")).json()["code"],
            (await sign_up_from(identity, prober, id_number=imported, real_name="李娜")).json()["code"],
        ]
        assert answers == ["id_number_already_registered", "imported_name_mismatch", "imported_name_mismatch"]

        # the budget is spent: no more answers from this address, the right name included
        for overrides in ({"id_number": victim["id_number"]}, {"id_number": imported, "real_name": "王秀英"}):
            refused = await sign_up_from(identity, prober, **overrides)
            assert (refused.status_code, refused.json()["code"]) == (429, "too_many_sign_up_attempts")
            retry_after = int(refused.headers["Retry-After"])
            assert 3000 < retry_after <= 3600
        assert (
            await identity.fetch("SELECT 1 FROM volunteer_records WHERE status = 'active' AND real_name = '王秀英'")
            == []
        )

        # another address still gets its answers; this one, an hour on
        other = await sign_up_from(identity, "198.51.100.7", id_number=victim["id_number"])
        assert other.json()["code"] == "id_number_already_registered"
        identity.clock.advance(timedelta(seconds=retry_after))  # as the refusal said
        claimed = await sign_up_from(identity, prober, id_number=imported, real_name="王秀英")
        assert claimed.status_code == 201, claimed.text


async def test_other_refusals_and_new_accounts_spend_nothing_of_the_budget(start_identity: StartIdentity) -> None:
    async with start_identity(trust_forwarded_for=True, sign_up_identity_refusals_per_hour=2) as identity:
        victim, _ = await identity.sign_up()
        office = "203.0.113.60"  # an office's volunteers signing up from one address
        for _ in range(4):
            assert (await sign_up_from(identity, office)).status_code == 201
            taken = await sign_up_from(identity, office, username=victim["username"])
            assert taken.json()["code"] == "username_taken"
            weak = await sign_up_from(identity, office, password="short")
            assert weak.json()["code"] == "password_length"
        answers = [
            (await sign_up_from(identity, office, id_number=victim["id_number"])).json()["code"] for _ in range(3)
        ]
        assert answers == ["id_number_already_registered"] * 2 + ["too_many_sign_up_attempts"]
        rows = await identity.fetch(
            "SELECT key, failures FROM login_throttle WHERE key LIKE 'sign-up:%' AND failures > 0"
        )
        assert [tuple(r) for r in rows] == [("sign-up:" + office, 2)]


async def test_simultaneous_probes_get_no_more_answers_than_the_budget(start_identity: StartIdentity) -> None:
    async with start_identity(trust_forwarded_for=True, sign_up_identity_refusals_per_hour=3) as identity:
        victim, _ = await identity.sign_up()
        responses = await asyncio.gather(
            *(sign_up_from(identity, "203.0.113.70", id_number=victim["id_number"]) for _ in range(8))
        )
        codes = sorted(r.json()["code"] for r in responses)
        assert codes == ["id_number_already_registered"] * 3 + ["too_many_sign_up_attempts"] * 5
