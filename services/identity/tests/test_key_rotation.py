"""Retiring a data key: ``python -m identity rekey`` re-seals every ID number and ID-card image
under the current key, so the service then runs without the old one. Against the real
PostgreSQL (and RabbitMQ, through the service); the command runs as operators run it."""

from __future__ import annotations

import asyncio
import base64
import csv
import os
import re
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from identity.crypto import DataCipher, Sealed, build_cipher, id_number_context
from identity.domain.documents import DocumentType
from identity.importer import run_import
from identity.models import metadata
from identity.rekey import SEALED_COLUMNS, reseal
from identity.testing import (
    PNG_BYTES,
    CommandRun,
    Identity,
    StartIdentity,
    add_imported_record,
    picture,
    run_identity_command,
)
from shared.testing import resident_id

OLD, NEW = "k2025", "k2026"
RECORDS, CARDS = "volunteer_records.id_ciphertext", "id_card_uploads.image_ciphertext"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def ring(keys: dict[str, str]) -> str:
    return ",".join(f"{kid}:{key}" for kid, key in keys.items())


class Run(CommandRun):
    def resealed(self) -> dict[str, tuple[int, int]]:
        """Per sealed column: (re-sealed, left under other keys)."""
        found = re.findall(r"^(\S+): re-sealed (\d+), left under other keys (\d+)", self.stdout, re.MULTILINE)
        return {column: (int(done), int(left)) for column, done, left in found}

    def usage(self) -> dict[tuple[str, str], int]:
        """``--status``: rows per (sealed column, key id)."""
        counts: dict[tuple[str, str], int] = {}
        for line in self.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] in (RECORDS, CARDS) and parts[2].isdigit():
                counts[(parts[0], parts[1])] = int(parts[2])
        return counts


async def rekey_command(database_url: str, keys: dict[str, str], current: str | None, *args: str) -> Run:
    env = {**os.environ, "IDENTITY_DATABASE_URL": database_url, "IDENTITY_DATA_KEYS": ring(keys)}
    env.pop("IDENTITY_DATA_KEY_ID", None)
    if current is not None:
        env["IDENTITY_DATA_KEY_ID"] = current
    return Run(*await run_identity_command(env, "rekey", *args))


async def import_one(identity: Identity, tmp_path: Path, name: str, number: str) -> uuid.UUID:
    path = tmp_path / "legacy.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["姓名", "证件号码", "手机号码", "地区代码"])
        writer.writerow([name, number, "13800138000", "110105"])
    summary = await run_import(
        identity.settings, path, cipher=identity.runtime.cipher, file_format="csv", clock=identity.clock
    )
    assert summary.inserted_rows == 1, summary
    [(record_id,)] = await identity.fetch("SELECT id FROM volunteer_records WHERE source = 'import'")
    return uuid.UUID(str(record_id))


async def sealed_id_number(identity: Identity, record_id: uuid.UUID | str) -> tuple[bytes, str]:
    [(ciphertext, key_id)] = await identity.fetch(
        "SELECT id_ciphertext, id_key_id FROM volunteer_records WHERE id = :i", i=uuid.UUID(str(record_id))
    )
    return bytes(ciphertext), key_id


async def disclosed(identity: Identity, account_id: str) -> str:
    response = await identity.client.post(
        f"/api/v1/admin/accounts/{account_id}/id-number-disclosures",
        json={"reason": "key rotation check"},
        headers=identity.national_admin(),
    )
    assert response.status_code == 200, response.text
    number: str = response.json()["id_number"]
    return number


async def review_image(identity: Identity, account_id: str) -> bytes:
    admin = identity.national_admin()
    page = (await identity.client.get("/api/v1/admin/id-card-reviews", headers=admin, params={"limit": 200})).json()
    [item] = [item for item in page["items"] if item["account_id"] == account_id]
    response = await identity.client.get(str(item["image_url"]), headers=admin)
    assert response.status_code == 200, response.text
    return response.content


def assert_nothing_sensitive(run: Run, numbers: list[str], keys: dict[str, str]) -> None:
    for number in numbers:
        assert number not in run.output
        assert number[:6] + "********" not in run.output  # not even masked: row ids only
    for key in keys.values():
        assert key not in run.output


# -- the rotation, end to end ---------------------------------------------------------------
async def test_after_rekey_the_service_reads_every_id_number_and_card_image_with_only_the_new_key(
    start_identity: StartIdentity, tmp_path: Path
) -> None:
    keys = {OLD: new_key(), NEW: new_key()}
    # 1. the data is written under the old key
    async with start_identity(data_keys=ring({OLD: keys[OLD]}), data_key_id=OLD) as before:
        database_url = before.settings.database_url
        verified_body, verified = await before.sign_up(real_name="王小明")
        await before.verification(await before.headers_for(verified_body), "verified")
        failed_body, failed = await before.sign_up(real_name="陈验证失败")
        failed_headers = await before.headers_for(failed_body)
        await before.verification(failed_headers, "failed")
        upload = await before.client.post(
            "/api/v1/accounts/me/id-card-images",
            files={"file": ("front.png", PNG_BYTES, "image/png")},
            headers=failed_headers,
        )
        assert upload.status_code == 201, upload.text
        imported_number = resident_id()
        imported_id = await import_one(before, tmp_path, "蒋丁", imported_number)
    numbers = [verified_body["id_number"], failed_body["id_number"], imported_number]

    # 2. the new key is added and made current; every replica restarted; rekey runs while it serves
    async with start_identity(database_url=database_url, data_keys=ring(keys), data_key_id=NEW) as during:
        newcomer_body, newcomer = await during.sign_up()  # sealed under the new key already
        assert (await sealed_id_number(during, newcomer["id"]))[1] == NEW
        before_rekey = await rekey_command(database_url, keys, NEW, "--status")
        assert before_rekey.code == 0, before_rekey.output
        assert before_rekey.usage() == {(RECORDS, OLD): 3, (RECORDS, NEW): 1, (CARDS, OLD): 1, (CARDS, NEW): 0}

        rekey = await rekey_command(database_url, keys, NEW, "--batch", "2")

        assert rekey.code == 0, rekey.output
        assert rekey.resealed() == {RECORDS: (3, 0), CARDS: (1, 0)}
        assert await disclosed(during, verified["id"]) == verified_body["id_number"]
    numbers.append(newcomer_body["id_number"])

    # 3. the old key is gone: the service still opens every value
    async with start_identity(database_url=database_url, data_keys=ring({NEW: keys[NEW]}), data_key_id=NEW) as after:
        assert await disclosed(after, verified["id"]) == verified_body["id_number"]
        assert await disclosed(after, failed["id"]) == failed_body["id_number"]
        assert await disclosed(after, newcomer["id"]) == newcomer_body["id_number"]
        assert picture(await review_image(after, failed["id"])) == picture(PNG_BYTES)
        # the imported record is claimed by sign-up, and the verifier opens its number
        claim_body, claimed = await after.sign_up(id_number=imported_number, real_name="蒋丁")
        assert claimed["id"] == str(imported_id)
        await after.verification(await after.headers_for(claim_body), "verified")
        assert await disclosed(after, claimed["id"]) == imported_number

    status = await rekey_command(database_url, keys, NEW, "--status")
    assert status.code == 0, status.output
    assert status.usage() == {(RECORDS, OLD): 0, (RECORDS, NEW): 4, (CARDS, OLD): 0, (CARDS, NEW): 1}
    assert re.search(rf"^key {OLD}: no rows left", status.stdout, re.MULTILINE), status.stdout
    again = await rekey_command(database_url, keys, NEW)
    assert again.code == 0, again.output
    assert again.resealed() == {RECORDS: (0, 0), CARDS: (0, 0)}
    for run in (before_rekey, rekey, status, again):
        assert_nothing_sensitive(run, numbers, keys)


async def test_a_value_that_does_not_open_is_reported_by_row_id_and_left_as_it_was_while_the_rest_is_resealed(
    start_identity: StartIdentity,
) -> None:
    keys = {OLD: new_key(), NEW: new_key()}
    async with start_identity(data_keys=ring({OLD: keys[OLD]}), data_key_id=OLD) as identity:
        database_url = identity.settings.database_url
        body, account = await identity.sign_up()
        lost = DataCipher({"k-lost": os.urandom(32)}, "k-lost", os.urandom(32))
        lost_number, damaged_number = resident_id(), resident_id()
        stray = await add_imported_record(
            identity, lost_number, "孙庚", cipher=lost
        )  # under a key no longer in the ring
        damaged = await add_imported_record(identity, damaged_number, "孙庚")
        ciphertext, _ = await sealed_id_number(identity, damaged)
        async with identity.runtime.engine.begin() as conn:
            flipped = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
            await conn.execute(
                text("UPDATE volunteer_records SET id_ciphertext = :c WHERE id = :i"), {"c": flipped, "i": damaged}
            )
        left_alone = {
            stray: await sealed_id_number(identity, stray),
            damaged: await sealed_id_number(identity, damaged),
        }

        rekey = await rekey_command(database_url, keys, NEW)

        assert rekey.code != 0
        assert rekey.resealed() == {RECORDS: (1, 2), CARDS: (0, 0)}
        assert re.search(rf"row {stray}\b.*k-lost.*not in IDENTITY_DATA_KEYS", rekey.stdout), rekey.stdout
        assert re.search(rf"row {damaged}\b.*{OLD}", rekey.stdout), rekey.stdout
        for record_id, sealed in left_alone.items():
            assert await sealed_id_number(identity, record_id) == sealed
        assert (await sealed_id_number(identity, account["id"]))[1] == NEW
        status = await rekey_command(database_url, keys, NEW, "--status")
        assert status.usage() == {
            (RECORDS, OLD): 1,
            (RECORDS, NEW): 1,
            (RECORDS, "k-lost"): 1,
            (CARDS, OLD): 0,
            (CARDS, NEW): 0,
        }
        assert re.search(
            r"^volunteer_records\.id_ciphertext\s+k-lost\s+1\s+not in IDENTITY_DATA_KEYS", status.stdout, re.MULTILINE
        ), status.stdout
        for run in (rekey, status):
            assert_nothing_sensitive(run, [body["id_number"], lost_number, damaged_number], keys)


async def test_two_rekeys_at_once_share_the_rows_and_reseal_each_value_once(start_identity: StartIdentity) -> None:
    keys = {OLD: new_key(), NEW: new_key()}
    async with start_identity(data_keys=ring({OLD: keys[OLD]}), data_key_id=OLD) as identity:
        signed = [await identity.sign_up() for _ in range(6)]
        rotated = build_cipher(
            identity.settings.model_copy(update={"data_keys": SecretStr(ring(keys)), "data_key_id": NEW})
        )

        runs = await asyncio.gather(
            reseal(identity.runtime.engine, rotated, batch_size=1),
            reseal(identity.runtime.engine, rotated, batch_size=1),
        )

        resealed: dict[str, int] = {}
        for run in runs:
            for result in run:
                assert result.unreadable == []
                resealed[result.column] = resealed.get(result.column, 0) + result.resealed
        assert resealed == {RECORDS: 6, CARDS: 0}
        assert await identity.fetch("SELECT DISTINCT id_key_id FROM volunteer_records") == [(NEW,)]
        for body, account in signed:
            ciphertext, key_id = await sealed_id_number(identity, account["id"])
            context = id_number_context(DocumentType.RESIDENT_ID)
            assert rotated.open(Sealed(key_id, ciphertext), context=context).decode() == body["id_number"]


async def test_a_run_cut_off_half_way_keeps_its_finished_batches_and_a_rerun_finishes_the_rest(
    start_identity: StartIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = {OLD: new_key(), NEW: new_key()}
    async with start_identity(data_keys=ring({OLD: keys[OLD]}), data_key_id=OLD) as identity:
        for _ in range(5):
            await identity.sign_up()
        rotated = build_cipher(
            identity.settings.model_copy(update={"data_keys": SecretStr(ring(keys)), "data_key_id": NEW})
        )
        calls = 0
        reseal_value = DataCipher.reseal

        def crash_on_the_third(self: DataCipher, sealed: Sealed, *, context: bytes = b"") -> Sealed:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise MemoryError("the process dies here")
            return reseal_value(self, sealed, context=context)

        with monkeypatch.context() as patch:
            patch.setattr(DataCipher, "reseal", crash_on_the_third)
            with pytest.raises(MemoryError):
                await reseal(identity.runtime.engine, rotated, batch_size=1)
        counts = await identity.fetch("SELECT id_key_id, count(*) FROM volunteer_records GROUP BY 1 ORDER BY 1")
        assert counts == [(OLD, 3), (NEW, 2)]  # two batches committed, the third rolled back

        [records, cards] = await reseal(identity.runtime.engine, rotated, batch_size=1)

        assert (records.resealed, records.remaining, cards.resealed) == (3, 0, 0)


async def test_rekey_refuses_to_guess_the_current_key_among_several(start_identity: StartIdentity) -> None:
    keys = {OLD: new_key(), NEW: new_key()}
    async with start_identity(data_keys=ring({OLD: keys[OLD]}), data_key_id=OLD) as identity:
        await identity.sign_up()
        refused = await rekey_command(identity.settings.database_url, {NEW: keys[NEW], OLD: keys[OLD]}, None)
        assert refused.code == 2
        assert "IDENTITY_DATA_KEY_ID" in refused.stderr
        assert await identity.fetch("SELECT DISTINCT id_key_id FROM volunteer_records") == [(OLD,)]


def test_every_ciphertext_column_of_the_schema_is_rekeyed() -> None:
    """A sealed column added later without a rekey entry would keep its old key forever."""
    ciphertexts = {
        f"{table.name}.{column.name}"
        for table in metadata.sorted_tables
        for column in table.columns
        if column.name.endswith("ciphertext")
    }
    assert {c.name for c in SEALED_COLUMNS} == ciphertexts == {RECORDS, CARDS}


async def test_rekey_passes_over_id_card_images_deleted_after_their_review(start_identity: StartIdentity) -> None:
    """A decided upload keeps its key id but no image (V6): nothing to re-seal, nothing that keeps
    the old key in use."""
    keys = {OLD: new_key(), NEW: new_key()}
    async with start_identity(data_keys=ring({OLD: keys[OLD]}), data_key_id=OLD) as before:
        database_url = before.settings.database_url
        body, _ = await before.sign_up(real_name="陈验证失败")
        headers = await before.headers_for(body)
        await before.verification(headers, "failed")
        upload = await before.client.post(
            "/api/v1/accounts/me/id-card-images", files={"file": ("f.png", PNG_BYTES, "image/png")}, headers=headers
        )
        assert upload.status_code == 201, upload.text
        decided = await before.client.post(
            f"/api/v1/admin/id-card-reviews/{upload.json()['id']}/decision",
            json={"approved": False, "reason": "照片不清楚"},
            headers=before.national_admin(),
        )
        assert decided.status_code == 200, decided.text
    run = await rekey_command(database_url, keys, NEW)
    assert run.code == 0, run.output
    assert run.resealed()[CARDS] == (0, 0)
    status = await rekey_command(database_url, keys, NEW, "--status")
    assert status.usage().get((CARDS, OLD), 0) == 0  # the old key seals none of them
