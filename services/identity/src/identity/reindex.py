"""Moving ID numbers' blind indexes to a new HMAC key, so that a leaked key can be retired.

ID numbers have little entropy: whoever holds the blind-index key and the indexes recovers every
number by trying them all. So the key rotates like the data keys (:mod:`identity.rekey`), in two
settings and one command:

* ``IDENTITY_BLIND_INDEX_KEY`` is the new key, ``IDENTITY_BLIND_INDEX_PREVIOUS_KEY`` the old one.
  While both are set, every lookup by blind index matches the value's index under either key
  (:meth:`~identity.crypto.DataCipher.blind_indexes`: sign-up's duplicate checks V2–V4, the team
  admin's lookup T7, the admins' account search, the importer's record ids and duplicate cases,
  a duplicate case's records), and every write stores the new key's index, with the new key's id
  (:func:`~identity.crypto.blind_key_fingerprint`) in ``id_blind_key_id``.
* :func:`reindex` (``python -m identity reindex``) walks ``volunteer_records`` whose index is not
  under the current key in id order, a batch at a time (``FOR NO KEY UPDATE SKIP LOCKED``, one
  transaction each, so it runs beside the service, two runs share the rows, and a stopped run is
  finished by running it again). Each number is opened with the data keys and indexed again; in
  the same transaction the record's account and every duplicate case under the record's old index
  move to the new one. An imported record, whose id is its row's fingerprint under the key of
  its import, gets that fingerprint under the new key (``import_key``), so the importer still knows
  its row (:func:`_import_key`). A number's records, its account and its cases thus never disagree for
  long, and a case always shares its index with one of its records, which is how
  :func:`identity.admin.case_records` finds the others under both keys (a case has no ciphertext
  of its own). Accounts and cases are locked with ``SKIP LOCKED`` as well: a record whose account
  or case a request holds is left for the next run, so the command never waits on a request that
  waits on it.
* When :func:`key_usage` (``--status``) counts no row under another key, the previous key is removed.

Uniqueness across the two keys: sign-up looks a number's records up under both keys before it
inserts, and concurrent sign-ups all write the new key's index, so the unique index on
``accounts.id_blind_index`` still arbitrates them; duplicate cases are opened only when none is open
under either index (and, during a rotation, openers take turns on the importer's lock). Should a
row's new index already be another row's all the same (two accounts, or two open cases, of one
number: possible only if replicas wrote with different keys at once), the row is left as it was and
reported, as is a number that does not open. Nothing is logged or printed but counts, key ids and
row ids: never a number, nor an index.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.exceptions import InvalidTag
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from identity.crypto import DataCipher, Sealed, id_number_context
from identity.domain.documents import DocumentType, blind_index_input
from identity.import_models import record_id
from identity.models import SOURCE_IMPORT
from identity.rekey import DOES_NOT_OPEN, KEY_MISSING
from shared.logging import get_logger

log = get_logger("identity.reindex")

DEFAULT_BATCH_SIZE = 500
#: a progress line every this many batches
PROGRESS_EVERY = 20
#: the row's new index is already another row's (two accounts, or two open cases, of one number)
CONFLICT = "conflict"
#: the tables that store a blind index, each with its key id beside it
TABLES = ("volunteer_records", "accounts", "duplicate_cases")

_PICK = text(
    "SELECT id, document_type, id_blind_index, id_ciphertext, id_key_id, source, "
    # an imported record renamed since keeps the name it was loaded under (VolunteerRecord.rename)
    "coalesce(history -> 'legacy' ->> 'name', real_name), "
    "history -> 'legacy' ->> 'volunteer_number', import_key FROM volunteer_records "
    "WHERE id_blind_key_id IS DISTINCT FROM :current AND id > :after ORDER BY id LIMIT :limit "
    # FOR NO KEY UPDATE: what the UPDATE takes (the index is no key), so a foreign key check's
    # KEY SHARE neither waits nor makes the row skipped; requests that change it, and another run, do
    "FOR NO KEY UPDATE SKIP LOCKED"
)
_ACCOUNTS = text("SELECT record_id FROM accounts WHERE record_id = ANY(CAST(:ids AS uuid[]))")
# FOR UPDATE: the unique index on accounts.id_blind_index makes changing it a key update
_LOCK_ACCOUNTS = text(
    "SELECT record_id FROM accounts WHERE record_id = ANY(CAST(:ids AS uuid[])) FOR UPDATE SKIP LOCKED"
)
_CASES = text("SELECT id, id_blind_index FROM duplicate_cases WHERE id_blind_index = ANY(CAST(:olds AS bytea[]))")
_LOCK_CASES = text(
    "SELECT id FROM duplicate_cases WHERE id_blind_index = ANY(CAST(:olds AS bytea[])) FOR NO KEY UPDATE SKIP LOCKED"
)
# set-based: one statement per table and batch (pairs of arrays, unnested side by side)
_WRITE_RECORDS = text(
    "UPDATE volunteer_records v SET id_blind_index = m.new, id_blind_key_id = :kid, "
    "import_key = coalesce(m.import_key, v.import_key) "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:news AS bytea[]), CAST(:import_keys AS uuid[])) "
    "AS m(id, new, import_key) WHERE v.id = m.id"
)
_WRITE_ACCOUNTS = text(
    "UPDATE accounts a SET id_blind_index = m.new, id_blind_key_id = :kid "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:news AS bytea[])) AS m(id, new) WHERE a.record_id = m.id"
)
_WRITE_CASES = text(
    "UPDATE duplicate_cases c SET id_blind_index = m.new, id_blind_key_id = :kid "
    "FROM unnest(CAST(:olds AS bytea[]), CAST(:news AS bytea[])) AS m(old, new) WHERE c.id_blind_index = m.old"
)


@dataclass(frozen=True)
class Unindexed:
    row_id: uuid.UUID
    #: :data:`~identity.rekey.KEY_MISSING`, :data:`~identity.rekey.DOES_NOT_OPEN` or :data:`CONFLICT`
    reason: str
    #: the data key id of the record's ciphertext
    key_id: str


@dataclass
class ReindexResult:
    records: int = 0
    accounts: int = 0
    cases: int = 0
    #: per table, rows not under the current key after the run (unreadable, busy, or new)
    remaining: dict[str, int] = field(default_factory=dict)
    unindexed: list[Unindexed] = field(default_factory=list)


@dataclass(frozen=True)
class _Move:
    record_id: uuid.UUID
    old: bytes
    new: bytes
    key_id: str
    has_account: bool
    #: an imported record's fingerprint under the new key (``import_key``), or None: left as it is
    import_key: uuid.UUID | None = None


async def reindex(engine: AsyncEngine, cipher: DataCipher, *, batch_size: int = DEFAULT_BATCH_SIZE) -> ReindexResult:
    """Index every ID number not under ``cipher``'s current blind-index key under it (records,
    their accounts, their numbers' duplicate cases)."""
    result = ReindexRun(cipher)
    after = uuid.UUID(int=0)
    batches = 0
    while True:
        async with engine.begin() as conn:
            rows = (
                await conn.execute(_PICK, {"current": cipher.blind_key_id, "after": after, "limit": batch_size})
            ).all()
            if not rows:
                break
            after = rows[-1][0]
            moves = result.recompute(rows)
            moves = await _without_busy(conn, moves)
            await _write(conn, moves, result)
        batches += 1
        if batches % PROGRESS_EVERY == 0:
            log.info("reindex_progress", records=result.done.records, accounts=result.done.accounts)
    done = result.done
    async with engine.connect() as conn:
        for table in TABLES:
            left = await conn.execute(
                text(
                    f"SELECT count(*) FROM {table} "  # noqa: S608 - a table name of TABLES
                    "WHERE id_blind_index IS NOT NULL AND id_blind_key_id IS DISTINCT FROM :current"
                ),
                {"current": cipher.blind_key_id},
            )
            done.remaining[table] = left.scalar_one()
    log.info(
        "reindex_done",
        key_id=cipher.blind_key_id,
        records=done.records,
        accounts=done.accounts,
        cases=done.cases,
        unindexed=len(done.unindexed),
        **{f"remaining_{table}": count for table, count in done.remaining.items()},
    )
    return done


class ReindexRun:
    """What a run has done so far, and the recomputation of a batch's indexes."""

    def __init__(self, cipher: DataCipher) -> None:
        self.cipher = cipher
        self.done = ReindexResult()

    def recompute(self, rows: Sequence[Any]) -> list[_Move]:
        moves = []
        for row_id, document_type, old, ciphertext, key_id, source, name, legacy_number, import_key in rows:
            if key_id not in self.cipher.key_ids:
                self.unindexed(row_id, KEY_MISSING, key_id)
                continue
            try:
                number = self.cipher.open(
                    Sealed(key_id, bytes(ciphertext)), context=id_number_context(document_type)
                ).decode()
            except (InvalidTag, ValueError):
                self.unindexed(row_id, DOES_NOT_OPEN, key_id)
                continue
            new = self.cipher.blind_index(blind_index_input(DocumentType(document_type), number))
            new_import_key = None
            if source == SOURCE_IMPORT:
                new_import_key = _import_key(bytes(old), new, name, legacy_number or "", import_key or row_id)
            moves.append(_Move(row_id, bytes(old), new, key_id, has_account=False, import_key=new_import_key))
        return moves

    def unindexed(self, row_id: uuid.UUID, reason: str, key_id: str) -> None:
        self.done.unindexed.append(Unindexed(row_id, reason, key_id))
        log.warning("reindex_record_left", row_id=str(row_id), key_id=key_id, reason=reason)


def _import_key(old: bytes, new: bytes, name: str, legacy_number: str, fingerprint: uuid.UUID) -> uuid.UUID | None:
    """An imported record's row fingerprint under the new key, so loading its file again still finds
    it (the importer checks ``import_key`` beside the id). Only for a record that is still the row
    it was loaded from: its fingerprint under the old index must be the one it carries (its id, or
    the ``import_key`` of an earlier rotation). ``name`` is the name the record was loaded under,
    kept when a claimed, not yet verified account changes it (``VolunteerRecord.rename``); a record
    renamed before that name was kept keeps what it has."""
    if record_id(old, name, legacy_number) != fingerprint.hex:
        return None
    return uuid.UUID(record_id(new, name, legacy_number))


async def _without_busy(conn: AsyncConnection, moves: list[_Move]) -> list[_Move]:
    """The moves whose account and duplicate cases this transaction could lock (SKIP LOCKED): a
    record whose account or case a request holds is left for the next run, never waited for."""
    if not moves:
        return moves
    ids = [m.record_id for m in moves]
    with_account = {r[0] for r in await conn.execute(_ACCOUNTS, {"ids": ids})}
    locked_accounts = {r[0] for r in await conn.execute(_LOCK_ACCOUNTS, {"ids": ids})}
    olds = list({m.old for m in moves})
    cases = (await conn.execute(_CASES, {"olds": olds})).all()
    locked_cases = {r[0] for r in await conn.execute(_LOCK_CASES, {"olds": olds})}
    busy_olds = {bytes(index) for case_id, index in cases if case_id not in locked_cases}
    return [
        replace(m, has_account=m.record_id in with_account)
        for m in moves
        if (m.record_id not in with_account or m.record_id in locked_accounts) and m.old not in busy_olds
    ]


async def _write(conn: AsyncConnection, moves: list[_Move], state: ReindexRun) -> None:
    if not moves:
        return
    try:
        async with conn.begin_nested():
            await _apply(conn, moves, state.cipher.blind_key_id, state.done)
    except IntegrityError:
        # some row's new index is another row's: one at a time, to leave only those out
        for move in moves:
            try:
                async with conn.begin_nested():
                    await _apply(conn, [move], state.cipher.blind_key_id, state.done)
            except IntegrityError:
                state.unindexed(move.record_id, CONFLICT, move.key_id)


async def _apply(conn: AsyncConnection, moves: list[_Move], key_id: str, done: ReindexResult) -> None:
    await conn.execute(
        _WRITE_RECORDS,
        {
            "ids": [m.record_id for m in moves],
            "news": [m.new for m in moves],
            "import_keys": [m.import_key for m in moves],
            "kid": key_id,
        },
    )
    accounts = [m for m in moves if m.has_account]
    if accounts:
        await conn.execute(
            _WRITE_ACCOUNTS, {"ids": [m.record_id for m in accounts], "news": [m.new for m in accounts], "kid": key_id}
        )
    pairs = {m.old: m.new for m in moves}
    cases = await conn.execute(_WRITE_CASES, {"olds": list(pairs), "news": list(pairs.values()), "kid": key_id})
    done.records += len(moves)
    done.accounts += len(accounts)
    done.cases += cases.rowcount


# -- --status ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class IndexUsage:
    table: str
    #: key id (None: written before key ids were kept) -> rows
    rows_by_key: dict[str | None, int]


async def key_usage(engine: AsyncEngine) -> list[IndexUsage]:
    """How many stored blind indexes of each table each key id made."""
    usage = []
    async with engine.connect() as conn:
        for table in TABLES:
            rows = await conn.execute(
                text(
                    f"SELECT id_blind_key_id, count(*) FROM {table} "  # noqa: S608 - a table name of TABLES
                    "WHERE id_blind_index IS NOT NULL GROUP BY 1 ORDER BY 1"
                )
            )
            usage.append(IndexUsage(table, {kid: count for kid, count in rows.tuples()}))
    return usage


def _label(kid: str | None, cipher: DataCipher) -> tuple[str, str]:
    if kid is None:
        return "(none)", "written before key ids were kept"
    if kid == cipher.blind_key_id:
        return kid, "current"
    if kid == cipher.previous_blind_key_id:
        return kid, "previous"
    return kid, "another key"


def describe_usage(usage: Sequence[IndexUsage], cipher: DataCipher) -> list[str]:
    table = [("table", "blind-index key id", "rows", "")]
    left = 0
    for item in usage:
        kids: set[str | None] = {cipher.blind_key_id, *item.rows_by_key}
        for kid in sorted(kids, key=lambda k: (k != cipher.blind_key_id, k or "")):
            rows = item.rows_by_key.get(kid, 0)
            if kid != cipher.blind_key_id:
                left += rows
            label, note = _label(kid, cipher)
            table.append((item.table, label, str(rows), note))
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = [f"current blind-index key: {cipher.blind_key_id}; previous: {cipher.previous_blind_key_id or 'none'}"]
    lines += [
        f"{name:<{widths[0]}}  {kid:<{widths[1]}}  {rows:>{widths[2]}}  {note}".rstrip()
        for name, kid, rows, note in table
    ]
    if left:
        lines.append(f"{left} stored indexes are not under the current key: run reindex")
    else:
        lines.append("every stored index is under the current key; IDENTITY_BLIND_INDEX_PREVIOUS_KEY can be removed")
    return lines


def describe_reindex(result: ReindexResult, cipher: DataCipher) -> list[str]:
    lines = [
        f"current blind-index key: {cipher.blind_key_id}",
        f"re-indexed {result.records} records, {result.accounts} accounts, {result.cases} duplicate cases",
    ]
    lines += [f"{table}: left under other keys {count}" for table, count in result.remaining.items()]
    for item in result.unindexed:
        why = {
            KEY_MISSING: f"its number is sealed with data key {item.key_id}, which is not in IDENTITY_DATA_KEYS",
            DOES_NOT_OPEN: f"its number does not open with data key {item.key_id} (another key under that id, "
            "or damaged)",
            CONFLICT: "its new index is already another account's or open duplicate case's (one number twice)",
        }[item.reason]
        lines.append(f"  volunteer record {item.row_id}: not re-indexed: {why}")
    return lines
