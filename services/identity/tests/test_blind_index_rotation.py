"""Retiring a blind-index key: with ``IDENTITY_BLIND_INDEX_PREVIOUS_KEY`` set every lookup finds
numbers indexed under either key, and ``python -m identity reindex`` moves every stored index to
the new key, so the service then runs without the old one. Against the real PostgreSQL (and
RabbitMQ, through the service); the command runs as operators run it."""

from __future__ import annotations

import asyncio
import base64
import csv
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from identity.crypto import blind_key_fingerprint, build_cipher
from identity.importer import run_import
from identity.reindex import reindex
from identity.testing import CommandRun, Identity, StartIdentity, add_imported_record, run_identity_command
from shared.testing import eventually, resident_id, sign_up_body

DATA_KEY = "k1"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def fingerprint(key: str) -> str:
    return blind_key_fingerprint(base64.b64decode(key))


@dataclass
class Keys:
    data: str
    old: str
    new: str

    def settings(self, blind: str, previous: str | None = None) -> dict[str, Any]:
        values: dict[str, Any] = {
            "data_keys": SecretStr(f"{DATA_KEY}:{self.data}"),
            "data_key_id": DATA_KEY,
            "blind_index_key": SecretStr(blind),
        }
        if previous is not None:
            values["blind_index_previous_key"] = SecretStr(previous)
        return values


class Run(CommandRun):
    def usage(self) -> dict[tuple[str, str], int]:
        """``--status``: stored indexes per (table, key id)."""
        found = re.findall(r"^(volunteer_records|accounts|duplicate_cases)\s+(\S+)\s+(\d+)", self.stdout, re.MULTILINE)
        return {(table, kid): int(rows) for table, kid, rows in found}

    def reindexed(self) -> tuple[int, int, int]:
        match = re.search(r"re-indexed (\d+) records, (\d+) accounts, (\d+) duplicate cases", self.stdout)
        assert match, self.output
        return int(match[1]), int(match[2]), int(match[3])


async def reindex_command(database_url: str, keys: Keys, blind: str, previous: str | None, *args: str) -> Run:
    env = {
        **os.environ,
        "IDENTITY_DATABASE_URL": database_url,
        "IDENTITY_DATA_KEYS": f"{DATA_KEY}:{keys.data}",
        "IDENTITY_DATA_KEY_ID": DATA_KEY,
        "IDENTITY_BLIND_INDEX_KEY": blind,
    }
    env.pop("IDENTITY_BLIND_INDEX_PREVIOUS_KEY", None)
    if previous is not None:
        env["IDENTITY_BLIND_INDEX_PREVIOUS_KEY"] = previous
    return Run(*await run_identity_command(env, "reindex", *args))


async def import_rows(identity: Identity, path: Path, rows: list[tuple[str, str]]) -> tuple[int, int]:
    """(inserted, duplicate cases opened) of importing ``(name, number)`` rows from ``path``."""
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["姓名", "证件号码", "手机号码", "地区代码"])
        for name, number in rows:
            writer.writerow([name, number, "13800138000", "110105"])
    summary = await run_import(
        identity.settings, path, cipher=identity.runtime.cipher, file_format="csv", clock=identity.clock
    )
    assert summary.status == "succeeded", summary
    return summary.inserted_rows, summary.duplicate_cases_opened


def masked(number: str) -> str:
    return number[:6] + "********" + number[-4:]


async def sign_up_refusal(identity: Identity, number: str, name: str = "张三") -> str:
    response = await identity.client.post("/api/v1/accounts", json=sign_up_body(id_number=number, real_name=name))
    assert response.status_code == 409, response.text
    code: str = response.json()["code"]
    return code


async def looked_up(identity: Identity, admin: dict[str, str], number: str, name: str) -> str | None:
    response = await identity.client.post(
        "/api/v1/volunteer-lookups", json={"id_number": number, "real_name": name}, headers=admin
    )
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    found: str = response.json()["volunteer_id"]
    return found


async def searched(identity: Identity, number: str) -> list[str]:
    response = await identity.client.post(
        "/api/v1/admin/account-searches",
        json={"document_type": "resident_id", "id_number": number, "reason": "rotation check"},
        headers=identity.national_admin(),
    )
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def open_cases(identity: Identity, number: str) -> list[dict[str, Any]]:
    page = await identity.client.get(
        "/api/v1/admin/duplicate-cases", headers=identity.national_admin(), params={"limit": 200}
    )
    assert page.status_code == 200, page.text
    return [case for case in page.json()["items"] if case["id_number_masked"] == masked(number)]


async def key_ids(identity: Identity) -> set[tuple[str, str | None]]:
    rows = await identity.fetch(
        "SELECT 'volunteer_records', id_blind_key_id FROM volunteer_records "
        "UNION SELECT 'accounts', id_blind_key_id FROM accounts WHERE id_blind_index IS NOT NULL "
        "UNION SELECT 'duplicate_cases', id_blind_key_id FROM duplicate_cases"
    )
    return {(table, kid) for table, kid in rows}


def assert_nothing_sensitive(run: Run, numbers: list[str], keys: Keys, indexes: list[bytes]) -> None:
    for number in numbers:
        assert number not in run.output
        assert masked(number) not in run.output
    for key in (keys.data, keys.old, keys.new):
        assert key not in run.output
    for index in indexes:
        assert index.hex() not in run.output
        assert base64.b64encode(index).decode() not in run.output


# -- the rotation, end to end ---------------------------------------------------------------
async def test_during_and_after_a_reindex_every_number_is_found_under_either_key_then_under_the_new_one(
    start_identity: StartIdentity, tmp_path: Path
) -> None:
    keys = Keys(new_key(), new_key(), new_key())
    old_id, new_id = fingerprint(keys.old), fingerprint(keys.new)
    registered_number, imported_number, twice_number, later_number, signed_number = (resident_id() for _ in range(5))

    # 1. before: everything indexed under the old key; a duplicate case open for one number
    async with start_identity(**keys.settings(keys.old)) as before:
        database_url = before.settings.database_url
        registered_body, registered = await before.sign_up(id_number=registered_number, real_name="刘德华")
        first_file = [("蒋丁", imported_number), ("孙庚", twice_number), ("孙庚", later_number)]
        assert await import_rows(before, tmp_path / "first.csv", first_file) == (3, 0)
        assert await import_rows(before, tmp_path / "second.csv", [("孙甲", twice_number)]) == (1, 1)
        assert await sign_up_refusal(before, twice_number, "孙庚") == "id_number_conflict"
        [old_case] = await open_cases(before, twice_number)
        assert len(old_case["records"]) == 2
        old_indexes = [bytes(r[0]) for r in await before.fetch("SELECT id_blind_index FROM volunteer_records")]

    # 2. the new key is current, the old one previous: what was indexed before is still found
    async with start_identity(database_url=database_url, **keys.settings(keys.new, keys.old)) as during:
        assert await sign_up_refusal(during, registered_number) == "id_number_already_registered"
        admin = await during.team_admin()
        assert await looked_up(during, admin, registered_number, "刘德华") == registered["id"]
        assert await searched(during, registered_number) == [registered["id"]]
        # a file loaded before the rotation adds nothing when loaded again
        assert await import_rows(during, tmp_path / "first.csv", first_file) == (0, 0)
        # a third record of the number with an open case: the case (under the old index) takes it in
        assert await import_rows(during, tmp_path / "third.csv", [("孙乙", twice_number)]) == (1, 0)
        [case] = await open_cases(during, twice_number)
        assert case["id"] == old_case["id"]
        assert len(case["records"]) == 3
        # a record under the new key and one under the old key are one number: a case is opened
        assert await import_rows(during, tmp_path / "later.csv", [("孙丙", later_number)]) == (1, 1)
        [later_case] = await open_cases(during, later_number)
        assert len(later_case["records"]) == 2
        # sign-up finds two records under the old key: it opens their case (under their index)
        old_cipher = build_cipher(during.settings.model_copy(update=keys.settings(keys.old)))
        signed_records = {await add_imported_record(during, signed_number, "钱七", cipher=old_cipher) for _ in range(2)}
        assert await sign_up_refusal(during, signed_number, "钱七") == "id_number_conflict"
        assert await sign_up_refusal(during, signed_number, "钱七") == "id_number_conflict"
        [signed_case] = await open_cases(during, signed_number)
        assert {r["record_id"] for r in signed_case["records"]} == {str(r) for r in signed_records}
        # written under the new key
        newcomer_body, newcomer = await during.sign_up()
        [(newcomer_key,)] = await during.fetch(
            "SELECT id_blind_key_id FROM accounts WHERE id = :i", i=uuid.UUID(newcomer["id"])
        )
        assert newcomer_key == new_id

        await _verified(during, [(registered_body, registered), (newcomer_body, newcomer)])
        status_before = await reindex_command(database_url, keys, keys.new, keys.old, "--status")
        assert status_before.code == 0, status_before.output
        assert status_before.usage() == {
            ("volunteer_records", new_id): 3,  # the two imported during the rotation, the newcomer
            ("volunteer_records", old_id): 7,
            ("accounts", new_id): 1,
            ("accounts", old_id): 1,
            ("duplicate_cases", new_id): 1,
            ("duplicate_cases", old_id): 2,
        }

        run = await reindex_command(database_url, keys, keys.new, keys.old, "--batch", "2")

        assert run.code == 0, run.output
        assert run.reindexed() == (7, 1, 2)
        status_after = await reindex_command(database_url, keys, keys.new, keys.old, "--status")
        assert status_after.usage() == {
            ("volunteer_records", new_id): 10,
            ("accounts", new_id): 2,
            ("duplicate_cases", new_id): 3,
        }
        assert "IDENTITY_BLIND_INDEX_PREVIOUS_KEY can be removed" in status_after.stdout
        assert await key_ids(during) == {
            ("volunteer_records", new_id),
            ("accounts", new_id),
            ("duplicate_cases", new_id),
        }
        [case] = await open_cases(during, twice_number)
        assert len(case["records"]) == 3
        [case] = await open_cases(during, signed_number)
        assert case["id"] == signed_case["id"]

    # 3. the old key is gone: everything is found under the new one alone
    async with start_identity(database_url=database_url, **keys.settings(keys.new)) as after:
        assert await sign_up_refusal(after, registered_number) == "id_number_already_registered"
        assert await sign_up_refusal(after, newcomer_body["id_number"]) == "id_number_already_registered"
        assert await sign_up_refusal(after, twice_number, "孙庚") == "id_number_conflict"
        admin = await after.team_admin()
        assert await looked_up(after, admin, registered_number, "刘德华") == registered["id"]
        assert await searched(after, registered_number) == [registered["id"]]
        [case] = await open_cases(after, twice_number)
        records = {r["record_id"] for r in case["records"]}
        assert len(records) == 3
        keep = sorted(records)[0]
        resolved = await after.client.post(
            f"/api/v1/admin/duplicate-cases/{case['id']}/resolution",
            json={"keep_record_id": keep, "record_ids": sorted(records)},
            headers=after.national_admin(),
        )
        assert resolved.status_code == 200, resolved.text
        # the number's one live record left is claimed by sign-up (V4); so is the imported one
        [(kept_name,)] = await after.fetch("SELECT real_name FROM volunteer_records WHERE id = :i", i=uuid.UUID(keep))
        _, claimed = await after.sign_up(id_number=twice_number, real_name=kept_name)
        assert claimed["id"] == keep
        [(imported_record,)] = await after.fetch(
            "SELECT id FROM volunteer_records WHERE real_name = '蒋丁' AND source = 'import'"
        )
        _, claimed = await after.sign_up(id_number=imported_number, real_name="蒋丁")
        assert claimed["id"] == str(imported_record)
        # every file loaded before or during the rotation adds nothing when loaded again (records
        # claimed and merged since included): a re-indexed record keeps its id, derived under the
        # old key, and is found by its row's fingerprint under the new one
        records_before = await after.fetch("SELECT count(*) FROM volunteer_records")
        loaded = {
            "first.csv": first_file,
            "second.csv": [("孙甲", twice_number)],
            "third.csv": [("孙乙", twice_number)],
            "later.csv": [("孙丙", later_number)],
        }
        for name, rows in loaded.items():
            assert await import_rows(after, tmp_path / name, rows) == (0, 0), name
        assert await after.fetch("SELECT count(*) FROM volunteer_records") == records_before

    again = await reindex_command(database_url, keys, keys.new, None)
    assert again.code == 0, again.output
    assert again.reindexed() == (0, 0, 0)
    numbers = [registered_number, imported_number, twice_number, later_number, signed_number]
    numbers.append(newcomer_body["id_number"])
    for output in (status_before, run, status_after, again):
        assert_nothing_sensitive(output, numbers, keys, old_indexes)
    assert registered_body["id_number"] == registered_number


async def test_a_number_that_does_not_open_is_reported_by_record_id_and_keeps_its_index(
    start_identity: StartIdentity, tmp_path: Path
) -> None:
    keys = Keys(new_key(), new_key(), new_key())
    async with start_identity(**keys.settings(keys.old)) as identity:
        database_url = identity.settings.database_url
        damaged_number = resident_id()
        await identity.sign_up()
        assert await import_rows(identity, tmp_path / "one.csv", [("孙庚", damaged_number)]) == (1, 0)
        [(damaged, ciphertext, index)] = await identity.fetch(
            "SELECT id, id_ciphertext, id_blind_index FROM volunteer_records WHERE source = 'import'"
        )
        async with identity.runtime.engine.begin() as conn:
            flipped = bytes(ciphertext[:-1]) + bytes([ciphertext[-1] ^ 1])
            await conn.exec_driver_sql(
                "UPDATE volunteer_records SET id_ciphertext = $1 WHERE id = $2", (flipped, damaged)
            )

    run = await reindex_command(database_url, keys, keys.new, keys.old)

    assert run.code == 1, run.output
    assert run.reindexed() == (1, 1, 0)
    assert re.search(rf"volunteer record {damaged}\b.*does not open with data key {DATA_KEY}", run.stdout), run.stdout
    assert "volunteer_records: left under other keys 1" in run.stdout
    async with start_identity(database_url=database_url, **keys.settings(keys.new, keys.old)) as identity:
        assert await identity.fetch(
            "SELECT id_blind_index, id_blind_key_id FROM volunteer_records WHERE id = :i", i=damaged
        ) == [(index, fingerprint(keys.old))]
    assert_nothing_sensitive(run, [damaged_number], keys, [bytes(index)])


async def test_a_claimed_record_renamed_before_verification_is_still_found_by_its_row_after_a_rotation(
    start_identity: StartIdentity, tmp_path: Path
) -> None:
    """A claimed, not yet verified account may change its name (V8), and the record then no longer
    carries the name its row was loaded under. The record keeps that name in its history on the
    first change, so the re-index still gives it the row's fingerprint under the new key: loading
    the file again after the rotation adds no second record and opens no case."""
    keys = Keys(new_key(), new_key(), new_key())
    number = resident_id()
    rows = [("吴验证失败", number)]
    async with start_identity(**keys.settings(keys.old)) as identity:
        database_url = identity.settings.database_url
        assert await import_rows(identity, tmp_path / "file.csv", rows) == (1, 0)
        body, _ = await identity.sign_up(id_number=number, real_name="吴验证失败")
        headers = await identity.headers_for(body)
        await identity.verification(headers, "failed")
        for name in ("吴改验证失败", "吴再改验证失败"):  # each checked again, and failed again
            renamed = await identity.client.patch("/api/v1/accounts/me", json={"real_name": name}, headers=headers)
            assert renamed.status_code == 200, renamed.text
        [(name, history)] = await identity.fetch("SELECT real_name, history FROM volunteer_records")
        assert (name, history["legacy"]["name"]) == ("吴再改验证失败", "吴验证失败")

    run = await reindex_command(database_url, keys, keys.new, keys.old)

    assert run.code == 0, run.output
    assert run.reindexed() == (1, 1, 0)
    async with start_identity(database_url=database_url, **keys.settings(keys.new)) as after:
        assert await after.fetch("SELECT import_key IS NOT NULL FROM volunteer_records") == [(True,)]
        assert await import_rows(after, tmp_path / "file.csv", rows) == (0, 0)
        assert await after.fetch("SELECT count(*) FROM volunteer_records") == [(1,)]
        assert await after.fetch("SELECT count(*) FROM duplicate_cases") == [(0,)]


async def test_a_record_renamed_before_its_imported_name_was_kept_is_re_indexed_without_a_fingerprint(
    start_identity: StartIdentity, tmp_path: Path
) -> None:
    """A record renamed by an earlier version, which did not keep the imported name, no longer tells
    what its row was, so the re-index cannot say what that row's fingerprint under the new key is.
    It moves the record's index all the same (nothing holds the rotation up), gives it no
    fingerprint (no guess that could match another row), and gives the record loaded beside it its
    own."""
    keys = Keys(new_key(), new_key(), new_key())
    kept_number, renamed_number = resident_id(), resident_id()
    rows = [("周正", kept_number), ("吴改", renamed_number)]
    async with start_identity(**keys.settings(keys.old)) as identity:
        database_url = identity.settings.database_url
        assert await import_rows(identity, tmp_path / "file.csv", rows) == (2, 0)
        async with identity.runtime.engine.begin() as conn:
            await conn.exec_driver_sql("UPDATE volunteer_records SET real_name = '吴新' WHERE real_name = '吴改'")

    run = await reindex_command(database_url, keys, keys.new, keys.old)

    assert run.code == 0, run.output
    assert run.reindexed() == (2, 0, 0)
    async with start_identity(database_url=database_url, **keys.settings(keys.new)) as after:
        found = dict(await after.fetch("SELECT real_name, import_key IS NOT NULL FROM volunteer_records"))
        assert found == {"周正": True, "吴新": False}
        assert await import_rows(after, tmp_path / "kept.csv", rows[:1]) == (0, 0)


async def _verified(identity: Identity, signed: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """Every sign-up's identity check has run: the service's verifier holds an account's row while it
    checks it, and a re-index skips a row another transaction holds (then reports it left)."""

    async def settled() -> bool:
        due = await identity.fetch(
            "SELECT count(*) FROM accounts WHERE id = ANY(:ids) AND verification_due_at IS NOT NULL",
            ids=[uuid.UUID(account["id"]) for _, account in signed],
        )
        return bool(due[0][0] == 0)

    assert await eventually(settled, timeout=30, interval=0.1)


async def test_a_run_cut_off_half_way_is_finished_by_the_next_and_two_runs_at_once_share_the_rows(
    start_identity: StartIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = Keys(new_key(), new_key(), new_key())
    async with start_identity(**keys.settings(keys.old)) as identity:
        signed = [await identity.sign_up() for _ in range(7)]
        await _verified(identity, signed)
        rotated = build_cipher(identity.settings.model_copy(update=keys.settings(keys.new, keys.old)))
        opened = 0
        open_value = rotated.open

        def crash_on_the_third(*args: Any, **kwargs: Any) -> bytes:
            nonlocal opened
            opened += 1
            if opened == 3:
                raise MemoryError("the process dies here")
            return open_value(*args, **kwargs)

        # the re-index's cipher only: the service's verifier opens numbers of these sign-ups meanwhile
        with monkeypatch.context() as patch:
            patch.setattr(rotated, "open", crash_on_the_third)
            with pytest.raises(MemoryError):
                await reindex(identity.runtime.engine, rotated, batch_size=2)
        counts = await identity.fetch(
            "SELECT id_blind_key_id, count(*) FROM volunteer_records GROUP BY 1 ORDER BY 1 NULLS LAST"
        )
        # two batches committed, the third rolled back
        assert sorted(counts, key=lambda c: c[1]) == [(rotated.blind_key_id, 2), (rotated.previous_blind_key_id, 5)]

        runs = await asyncio.gather(
            reindex(identity.runtime.engine, rotated, batch_size=1),
            reindex(identity.runtime.engine, rotated, batch_size=1),
        )

        assert sum(r.records for r in runs) == 5
        assert sum(r.accounts for r in runs) == 5
        assert all(r.unindexed == [] for r in runs)
        assert await key_ids(identity) == {
            ("volunteer_records", rotated.blind_key_id),
            ("accounts", rotated.blind_key_id),
        }
        new_only = build_cipher(identity.settings.model_copy(update=keys.settings(keys.new)))
        for body, account in signed:  # under the new key alone, each found as before
            index = new_only.blind_index(f"resident_id:{body['id_number']}")
            found = await identity.fetch("SELECT id FROM accounts WHERE id_blind_index = :b", b=index)
            assert found == [(uuid.UUID(account["id"]),)]
        [again] = [await reindex(identity.runtime.engine, rotated)]
        assert (again.records, again.remaining) == (0, {"volunteer_records": 0, "accounts": 0, "duplicate_cases": 0})
