"""Usernames unique ignoring case (V1, V7) and mobile numbers of any country (V1, V8).

A username is one person's whatever its case: ``ZhangSan`` is refused once ``zhangsan`` exists
(also when both sign up at once), and logs into ``zhangsan``. Case-twins registered before this
rule stay (usernames never change, accounts are never deleted): each is found by its own
spelling, none by another. Mobiles: mainland ones as before, any other in international form.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from identity import errors
from identity.bootstrap import SERVICE_ROOT
from identity.domain import documents
from identity.repository import Accounts
from identity.testing import Identity, StartIdentity
from shared import migrations
from shared.db import make_engine, make_session_factory
from shared.errors import AppError
from shared.migrations import upgrade_head
from shared.testing import ExplainingSession, recorded_statements, sign_up_body

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
async def identity(start_identity: StartIdentity) -> AsyncIterator[Identity]:
    """Wrong passwords on purpose: the client's address is not to be locked out meanwhile."""
    async with start_identity(login_address_free_failures=1000) as service:
        yield service


def fresh(prefix: str = "zhang") -> str:
    return f"{prefix}{secrets.token_hex(4)}"


async def account_of(identity: Identity, username: str, password: str = PASSWORD) -> str | None:
    """The id of the account a login with ``username`` opens, or None (invalid_credentials)."""
    response = await identity.log_in(username, password)
    if response.status_code == 401:
        assert response.json()["code"] == "invalid_credentials"
        return None
    assert response.status_code == 200, response.text
    me = await identity.me({"Authorization": f"Bearer {response.json()['access_token']}"})
    return str(me["id"])


async def add_case_twin(identity: Identity, username: str, *, password: str = PASSWORD) -> str:
    """An account as one registered before usernames were unique ignoring case: migration 0014
    marked it ``username_case_twin`` (a staff-like row: enough to log in)."""
    account_id = uuid.uuid4()
    password_hash = await identity.runtime.passwords.hash(password)
    async with identity.runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO accounts (id, username, password_hash, display_name, email, username_case_twin)"
                " VALUES (:i, :u, :h, '旧账号', :e, true)"
            ),
            {"i": account_id, "u": username, "h": password_hash, "e": f"{username.lower()}@example.org"},
        )
    return str(account_id)


# -- one username ignoring case ---------------------------------------------------------------
async def test_a_username_taken_in_another_case_is_refused(identity: Identity) -> None:
    name = fresh()
    await identity.sign_up(username=name)
    for other in (name.upper(), name.capitalize()):
        refused = await identity.client.post("/api/v1/accounts", json=sign_up_body(username=other))
        assert (refused.status_code, refused.json()["code"]) == (409, "username_taken"), refused.text
    rows = await identity.fetch("SELECT count(*) FROM accounts WHERE lower(username) = :u", u=name)
    assert rows[0][0] == 1


async def test_two_sign_ups_differing_only_in_case_at_once_give_one_account(identity: Identity) -> None:
    for _ in range(3):
        name = fresh()
        bodies = [sign_up_body(username=name), sign_up_body(username=name.upper())]
        responses = await asyncio.gather(*(identity.client.post("/api/v1/accounts", json=b) for b in bodies))
        assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
        assert {r.json()["code"] for r in responses if r.status_code == 409} == {"username_taken"}
        rows = await identity.fetch("SELECT count(*) FROM accounts WHERE lower(username) = :u", u=name)
        assert rows[0][0] == 1


async def test_login_and_password_change_take_the_username_in_any_case(identity: Identity) -> None:
    name = fresh("ZhangSan")
    _, account = await identity.sign_up(username=name)
    for typed in (name, name.lower(), name.upper()):
        assert await account_of(identity, typed) == account["id"], typed
    assert await account_of(identity, name.lower(), "not the password at all") is None
    changed = await identity.client.post(
        "/api/v1/password-changes",
        json={"username": name.upper(), "current_password": PASSWORD, "new_password": "another long passphrase"},
    )
    assert changed.status_code == 200, changed.text
    assert await account_of(identity, name.lower(), "another long passphrase") == account["id"]


async def test_a_reset_link_is_sent_for_the_username_in_another_case(identity: Identity) -> None:
    name = fresh()
    _, account = await identity.sign_up(username=name)
    asked = await identity.client.post("/api/v1/password-resets", json={"username": name.upper()})
    assert asked.status_code == 202
    assert len(await identity.events("account.password_reset_requested", account["id"])) == 1


async def test_case_twins_registered_before_are_each_found_by_their_own_spelling_only(identity: Identity) -> None:
    name = fresh()
    _, oldest = await identity.sign_up(username=name)
    twin = await add_case_twin(identity, name.upper(), password="the twin's own passphrase")

    assert await account_of(identity, name) == oldest["id"]
    assert await account_of(identity, name.upper(), "the twin's own passphrase") == twin
    # a third spelling is either's: neither is guessed, the answer is an unknown username's
    third = name.capitalize()
    assert await account_of(identity, third) is None
    assert await account_of(identity, third, "the twin's own passphrase") is None
    asked = await identity.client.post("/api/v1/password-resets", json={"username": third})
    assert asked.status_code == 202
    for account_id in (oldest["id"], twin):
        assert await identity.events("account.password_reset_requested", account_id) == []
    # while each one's own spelling still gets its own link
    for typed, account_id in ((name, oldest["id"]), (name.upper(), twin)):
        await identity.client.post("/api/v1/password-resets", json={"username": typed})
        assert len(await identity.events("account.password_reset_requested", account_id)) == 1
    # and no one signs up with a further one
    refused = await identity.client.post("/api/v1/accounts", json=sign_up_body(username=third))
    assert (refused.status_code, refused.json()["code"]) == (409, "username_taken")


async def test_the_database_refuses_a_new_case_twin_and_a_renamed_twin(identity: Identity) -> None:
    name = fresh()
    await identity.sign_up(username=name)
    with pytest.raises(IntegrityError, match="ux_accounts_username_lower"):
        async with identity.runtime.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO accounts (id, username, password_hash, display_name, email)"
                    " VALUES (gen_random_uuid(), :u, 'x', 'x', 'x@example.org')"
                ),
                {"u": name.upper()},
            )
    twin = await add_case_twin(identity, name.capitalize())
    with pytest.raises(DBAPIError, match="usernames never change"):
        async with identity.runtime.engine.begin() as conn:
            await conn.execute(text("UPDATE accounts SET username = :u WHERE id = :i"), {"u": fresh(), "i": twin})


async def test_a_failed_login_sends_the_same_statements_for_unknown_and_known_usernames(identity: Identity) -> None:
    """No timing oracle: an unknown username, one in another case and the exact one read alike."""
    name = fresh()
    await identity.sign_up(username=name)
    seen: dict[str, list[str]] = {}
    for typed in (fresh("ghost"), name.upper(), name):
        with recorded_statements(identity.runtime.engine) as statements:
            assert await account_of(identity, typed, "a wrong passphrase here") is None
        # the login's own: the throttle's and the lookup's (not the background verifier's, say)
        seen[typed] = [s for s in statements if "login_throttle" in s or "accounts.username = " in s]
    first, *others = seen.values()
    assert any("accounts.username = " in s for s in first), first
    assert all(statements == first for statements in others), seen


async def test_the_username_lookup_reads_a_few_rows_at_scale(
    database_factory: Callable[[str], Awaitable[str]],
) -> None:
    engine = make_engine(await database_factory("identity_usernames"), pool_size=2)
    try:
        await upgrade_head(engine, SERVICE_ROOT)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO accounts (id, username, password_hash, display_name, email)"
                    " SELECT gen_random_uuid(), 'user' || g, 'x', 'x', 'x@example.org'"
                    " FROM generate_series(1, 30000) AS g"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO accounts (id, username, password_hash, display_name, email, username_case_twin)"
                    " VALUES (gen_random_uuid(), 'USER77', 'x', 'x', 'x@example.org', true)"
                )
            )
            await conn.execute(text("ANALYZE accounts"))
        async with make_session_factory(engine)() as real:
            session = ExplainingSession(real)
            accounts = Accounts(session)  # type: ignore[arg-type]
            found = {typed: await accounts.by_username(typed) for typed in ("user12", "USER12", "USER77", "User77")}
            missing = await accounts.by_username("nobody")
        assert {typed: a.username if a else None for typed, a in found.items()} == {
            "user12": "user12",
            "USER12": "user12",
            "USER77": "USER77",
            "User77": None,  # user77 and USER77
        }
        assert missing is None
        assert max(session.rows_read) <= 10, (session.rows_read, session.plans)
    finally:
        await engine.dispose()


# -- the migration, over a database holding case-twins ----------------------------------------
async def migrate_to(conn: AsyncConnection, revision: str, *, down: bool = False) -> None:
    await migrations.migrate_to(conn, SERVICE_ROOT, revision, down=down)


async def test_the_migration_keeps_case_twins_registered_before_and_refuses_new_ones(
    database_factory: Callable[[str], Awaitable[str]],
) -> None:
    engine = make_engine(await database_factory("identity_case_twins"), pool_size=1, max_overflow=0)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    accounts = [  # (username, created) in the order they registered
        ("zhangsan", start),
        ("ZhangSan", start + timedelta(days=1)),
        ("ZHANGSAN", start + timedelta(days=2)),
        ("lisi", start + timedelta(days=3)),
        ("Wang.Wu", start + timedelta(days=4)),
        ("wang.wu", start + timedelta(days=4)),  # the same moment: the smaller id is the older
    ]
    ids = {username: uuid.uuid4() for username, _ in accounts}
    try:
        async with engine.begin() as conn:
            await migrate_to(conn, "0013")
            for username, created in reversed(accounts):
                await conn.execute(
                    text(
                        "INSERT INTO accounts (id, username, password_hash, display_name, email, created_at)"
                        " VALUES (:i, :u, 'x', 'x', 'x@example.org', :c)"
                    ),
                    {"i": ids[username], "u": username, "c": created},
                )
        await upgrade_head(engine, SERVICE_ROOT)
        async with engine.connect() as conn:
            marked = dict((await conn.execute(text("SELECT username, username_case_twin FROM accounts"))).all())
            index = (
                await conn.execute(text("SELECT pg_get_indexdef('ux_accounts_username_lower'::regclass)"))
            ).scalar()
        wang_twin = max(("Wang.Wu", "wang.wu"), key=lambda u: ids[u])
        assert marked == {
            "zhangsan": False,
            "ZhangSan": True,
            "ZHANGSAN": True,
            "lisi": False,
            "Wang.Wu": wang_twin == "Wang.Wu",
            "wang.wu": wang_twin == "wang.wu",
        }
        assert index.startswith("CREATE UNIQUE INDEX"), index
        assert "lower((username)::text)" in index, index
        assert "NOT username_case_twin" in index, index
        for username in ("zhangSAN", "LiSi"):  # new accounts are never marked: refused
            with pytest.raises(IntegrityError, match="ux_accounts_username_lower"):
                async with engine.begin() as conn:
                    await conn.execute(
                        text(
                            "INSERT INTO accounts (id, username, password_hash, display_name, email)"
                            " VALUES (gen_random_uuid(), :u, 'x', 'x', 'x@example.org')"
                        ),
                        {"u": username},
                    )
        # and back: the twins are still there, the column and indexes gone; then up again
        async with engine.begin() as conn:
            await migrate_to(conn, "0013", down=True)
            columns = (
                await conn.execute(
                    text("SELECT column_name FROM information_schema.columns WHERE table_name = 'accounts'")
                )
            ).scalars()
            assert "username_case_twin" not in set(columns)
        await upgrade_head(engine, SERVICE_ROOT)
        async with engine.connect() as conn:
            again = dict((await conn.execute(text("SELECT username, username_case_twin FROM accounts"))).all())
        assert again == marked
    finally:
        await engine.dispose()


# -- mobiles ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("13812345678", "13812345678"),  # mainland: as always
        ("+86 138-1234-5678", "13812345678"),
        ("+852 9123 4567", "+85291234567"),  # Hong Kong
        ("+853 6612 3456", "+85366123456"),  # Macao
        ("+886 912 345 678", "+886912345678"),  # Taiwan
        ("+44 7700 900123", "+447700900123"),  # abroad
        ("+1-202-555-0147", "+12025550147"),
        ("＋８５２ ９１２３ ４５６７", "+85291234567"),  # full-width
        ("+123 4567 8901 2345", "+123456789012345"),  # E.164's 15 digits
    ],
)
def test_mobiles_of_any_country_are_taken_in_international_form(typed: str, stored: str) -> None:
    assert documents.check_mobile(typed) == stored


@pytest.mark.parametrize(
    "typed",
    [
        "9123 4567",  # a Hong Kong number without its country code
        "0085291234567",  # international, but without +
        "85291234567",
        "+1234 5678 9012 3456",  # 16 digits
        "+123456",  # too short for any country
        "+0852 9123 4567",  # no country code starts with 0
        "+86 10 1234 5678",  # a mainland landline
        "+852 (9123) 4567",
        "+852 9123 4567 ext 1",
        "+٨٥٢٩١٢٣٤٥٦٧",  # Arabic-Indic digits
    ],
)
def test_other_mobiles_are_refused(typed: str) -> None:
    with pytest.raises(AppError) as refused:
        documents.check_mobile(typed)
    assert refused.value.code == "mobile_invalid"


@pytest.mark.parametrize(
    ("document", "mobile", "stored"),
    [
        (
            {"document_type": "hk_macao_permit", "id_number": "H{8}", "birth_date": "1990-01-01"},
            "+852 9123 4567",
            "+85291234567",
        ),
        (
            {"document_type": "hk_macao_permit", "id_number": "M{8}", "birth_date": "1990-01-01"},
            "+853 6612 3456",
            "+85366123456",
        ),
        (
            {"document_type": "taiwan_permit", "id_number": "{8}", "birth_date": "1990-01-01"},
            "+886 912 345 678",
            "+886912345678",
        ),
        (
            {"document_type": "passport", "id_number": "E{8}", "birth_date": "1980-05-05"},
            "+44 7700 900123",
            "+447700900123",
        ),
        ({}, "+1 202-555-0147", "+12025550147"),  # a resident ID holder living abroad
    ],
)
async def test_sign_up_takes_the_holders_own_mobile(
    identity: Identity, document: dict[str, str], mobile: str, stored: str
) -> None:
    if "id_number" in document:
        document = {**document, "id_number": document["id_number"].replace("{8}", f"{secrets.randbelow(10**8):08d}")}
    body, account = await identity.sign_up(**document, mobile=mobile)
    assert account["mobile"] == stored
    assert (await identity.me(await identity.headers_for(body)))["mobile"] == stored


async def test_a_mobile_without_its_country_code_is_refused_with_the_way_to_write_it(identity: Identity) -> None:
    refused = await identity.client.post("/api/v1/accounts", json=sign_up_body(mobile="9123 4567"))
    assert (refused.status_code, refused.json()["code"]) == (422, "mobile_invalid")
    assert refused.json()["message"] == errors.MOBILE_INVALID.zh
    assert "11位" in errors.MOBILE_INVALID.zh
    assert "+" in errors.MOBILE_INVALID.zh


async def test_the_profile_takes_a_mobile_of_any_country(identity: Identity) -> None:
    body, _ = await identity.sign_up()
    headers = await identity.headers_for(body)
    abroad = await identity.client.patch("/api/v1/accounts/me", json={"mobile": "+44 7700 900123"}, headers=headers)
    assert abroad.status_code == 200, abroad.text
    assert (await identity.me(headers))["mobile"] == "+447700900123"
    refused = await identity.client.patch("/api/v1/accounts/me", json={"mobile": "7700 900123"}, headers=headers)
    assert (refused.status_code, refused.json()["code"]) == (422, "mobile_invalid")
    home = await identity.client.patch("/api/v1/accounts/me", json={"mobile": "+86 139 1234 5678"}, headers=headers)
    assert home.status_code == 200, home.text
    assert (await identity.me(headers))["mobile"] == "13912345678"
