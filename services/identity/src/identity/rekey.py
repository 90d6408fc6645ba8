"""Re-sealing personal data under the current data key, so that an old key can be retired.

Every sealed column (:data:`SEALED_COLUMNS`) is walked in id order, a batch of rows at a time:
the rows of a batch not yet under the current key are locked ``FOR NO KEY UPDATE SKIP LOCKED``,
opened with the key they name and sealed again under the current one with the context the service
uses (:mod:`identity.crypto`), and the batch commits on its own. So it runs beside the service (a
row a request holds is skipped, not waited for), two runs share the rows rather than fight over
them, and a run stopped half-way is finished by running it again.

A value that does not open (its key is not in the ring, or it does not decrypt) is left as it
was and reported by row id; the others go on. A value is only ever bytes passed from opening to
sealing inside :meth:`~identity.crypto.DataCipher.reseal`: nothing is logged or printed but
counts, key ids and row ids.

The blind index (the HMAC that finds an ID number) is not sealed and has its own key: it is not
touched here (:mod:`identity.reindex` rotates it).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from identity.crypto import DataCipher, Sealed, id_card_context, id_number_context
from identity.models import metadata
from shared.logging import get_logger

log = get_logger("identity.rekey")

DEFAULT_BATCH_SIZE = 500
#: a progress line every this many batches
PROGRESS_EVERY = 20

KEY_MISSING = "key_missing"
DOES_NOT_OPEN = "does_not_open"


@dataclass(frozen=True)
class SealedColumn:
    """A column of ciphertexts, the column of their key ids, and what their context is made of."""

    table: Table
    ciphertext: str
    key_id: str
    #: the row's columns the context needs (besides ``id``, always selected)
    context_columns: tuple[str, ...]
    #: the row (with ``id`` and the context columns) to the context its value was sealed with
    context: Callable[[Any], bytes]
    #: at most this many rows a transaction, whatever ``--batch`` says (a batch is held in memory)
    max_batch: int | None = None

    @property
    def name(self) -> str:
        return f"{self.table.name}.{self.ciphertext}"


SEALED_COLUMNS: tuple[SealedColumn, ...] = (
    SealedColumn(
        metadata.tables["volunteer_records"],
        "id_ciphertext",
        "id_key_id",
        ("document_type",),
        lambda row: id_number_context(row.document_type),
    ),
    SealedColumn(
        metadata.tables["id_card_uploads"],
        "image_ciphertext",
        "key_id",
        (),
        lambda row: id_card_context(row.id),
        max_batch=20,  # images of up to IDENTITY_ID_CARD_MAX_BYTES (5 MiB) each
    ),
)


@dataclass(frozen=True)
class Unreadable:
    row_id: uuid.UUID
    key_id: str
    #: :data:`KEY_MISSING` or :data:`DOES_NOT_OPEN`
    reason: str


@dataclass
class ResealResult:
    column: str
    resealed: int = 0
    #: rows under another key than the current one after the run (unreadable, busy, or new)
    remaining: int = 0
    unreadable: list[Unreadable] = field(default_factory=list)


@dataclass(frozen=True)
class KeyUsage:
    column: str
    rows_by_key: dict[str, int]


async def reseal(
    engine: AsyncEngine,
    cipher: DataCipher,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    columns: Sequence[SealedColumn] = SEALED_COLUMNS,
) -> list[ResealResult]:
    """Re-seal under ``cipher.current_key_id`` every value of ``columns`` under another key."""
    return [await _reseal_column(engine, cipher, column, batch_size) for column in columns]


async def _reseal_column(
    engine: AsyncEngine, cipher: DataCipher, column: SealedColumn, batch_size: int
) -> ResealResult:
    table, current = column.table, cipher.current_key_id
    row_id, key_id = table.c.id, table.c[column.key_id]
    held = table.c[column.ciphertext].is_not(None)  # an ID-card image deleted once reviewed seals nothing
    pick = (
        select(row_id, table.c[column.ciphertext], key_id, *(table.c[name] for name in column.context_columns))
        .where(key_id != current, held)
        .order_by(row_id)
        .limit(min(batch_size, column.max_batch or batch_size))
        # FOR NO KEY UPDATE: what the UPDATE below takes anyway (no key changes), so a request
        # that only references the row (a foreign key check's KEY SHARE) is neither blocked nor
        # makes the row skipped; requests that lock or change the row, and another run, exclude it
        .with_for_update(skip_locked=True, key_share=True)
    )
    write = (
        update(table)
        .where(row_id == bindparam("row_id_"))
        .values({column.ciphertext: bindparam("ciphertext_"), column.key_id: bindparam("key_id_")})
    )
    result = ResealResult(column.name)
    after: uuid.UUID | None = None
    batches = 0
    while True:
        async with engine.begin() as conn:
            rows = (await conn.execute(pick if after is None else pick.where(row_id > after))).all()
            if not rows:
                break
            after = rows[-1][0]
            resealed = []
            for row in rows:
                sealed = Sealed(row[2], bytes(row[1]))
                if sealed.key_id not in cipher.key_ids:
                    _unreadable(result, row[0], sealed.key_id, KEY_MISSING)
                    continue
                try:
                    new = cipher.reseal(sealed, context=column.context(row))
                except (InvalidTag, ValueError):
                    _unreadable(result, row[0], sealed.key_id, DOES_NOT_OPEN)
                    continue
                resealed.append({"row_id_": row[0], "ciphertext_": new.data, "key_id_": new.key_id})
            if resealed:
                await conn.execute(write, resealed)
        result.resealed += len(resealed)
        batches += 1
        if batches % PROGRESS_EVERY == 0:
            log.info("rekey_progress", column=column.name, resealed=result.resealed)
    async with engine.connect() as conn:
        remaining = await conn.execute(select(func.count()).select_from(table).where(key_id != current, held))
        result.remaining = remaining.scalar_one()
    log.info(
        "rekey_column_done",
        column=column.name,
        key_id=current,
        resealed=result.resealed,
        remaining=result.remaining,
        unreadable=len(result.unreadable),
    )
    return result


def _unreadable(result: ResealResult, row_id: uuid.UUID, key_id: str, reason: str) -> None:
    result.unreadable.append(Unreadable(row_id, key_id, reason))
    log.warning("rekey_value_unreadable", column=result.column, row_id=str(row_id), key_id=key_id, reason=reason)


async def key_usage(engine: AsyncEngine, columns: Sequence[SealedColumn] = SEALED_COLUMNS) -> list[KeyUsage]:
    """How many rows of each column each key id seals."""
    usage = []
    async with engine.connect() as conn:
        for column in columns:
            key_id = column.table.c[column.key_id]
            held = column.table.c[column.ciphertext].is_not(None)
            rows = await conn.execute(select(key_id, func.count()).where(held).group_by(key_id).order_by(key_id))
            usage.append(KeyUsage(column.name, {kid: count for kid, count in rows.tuples()}))
    return usage


# -- what the command prints -------------------------------------------------------------------
def describe_reseal(results: Sequence[ResealResult], current: str) -> list[str]:
    lines = [f"current key: {current}"]
    for result in results:
        lines.append(f"{result.column}: re-sealed {result.resealed}, left under other keys {result.remaining}")
        for item in result.unreadable:
            why = (
                f"key {item.key_id} is not in IDENTITY_DATA_KEYS"
                if item.reason == KEY_MISSING
                else f"does not open with key {item.key_id} (another key under that id, or damaged)"
            )
            lines.append(f"  row {item.row_id}: not re-sealed: {why}")
    return lines


def describe_usage(usage: Sequence[KeyUsage], cipher: DataCipher) -> list[str]:
    """Rows per column and key id: every key of the ring (0 when unused) and any other key id found."""
    table = [("sealed column", "key id", "rows", "")]
    totals: dict[str, int] = dict.fromkeys(cipher.key_ids, 0)
    for item in usage:
        for kid in sorted(set(cipher.key_ids) | set(item.rows_by_key)):
            rows = item.rows_by_key.get(kid, 0)
            totals[kid] = totals.get(kid, 0) + rows
            note = (
                "current"
                if kid == cipher.current_key_id
                else ("not in IDENTITY_DATA_KEYS" if kid not in cipher.key_ids else "")
            )
            table.append((item.column, kid, str(rows), note))
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = [f"current key: {cipher.current_key_id}"]
    lines += [
        f"{column:<{widths[0]}}  {kid:<{widths[1]}}  {rows:>{widths[2]}}  {note}".rstrip()
        for column, kid, rows, note in table
    ]
    for kid, rows in totals.items():
        if kid == cipher.current_key_id:
            continue
        if kid not in cipher.key_ids:
            lines.append(f"key {kid}: {_rows(rows)} under a key not in IDENTITY_DATA_KEYS: they cannot be read")
        elif rows:
            lines.append(f"key {kid}: {_rows(rows)} left; run rekey before removing it")
        else:
            lines.append(f"key {kid}: no rows left; it can be removed from IDENTITY_DATA_KEYS")
    return lines


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"
