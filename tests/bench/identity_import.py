"""Benchmark of the identity bulk importer (issue 3): a generated file of 1 000 000 rows is
imported end to end (read, validate, seal, COPY to staging, INSERT ... ON CONFLICT, duplicate
cases), then the final rows are COPYed raw into an identical table in the same run; the
importer's rows/s is printed as a ratio to that raw COPY (target ≥ 40 %, and under 60 s).

Run: ``.venv/bin/python tests/bench/identity_import.py [--rows N] [--keep]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from pathlib import Path

import asyncpg
from sqlalchemy.ext.asyncio import create_async_engine
from stdnum.cn import ric

from identity.bootstrap import SERVICE_ROOT
from identity.config import IdentitySettings
from identity.importer import run_import
from shared import regions
from shared.db import asyncpg_dsn
from shared.migrations import upgrade_head
from shared.testing import create_database, drop_database

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英华"


def generate(path: Path, rows: int, *, seed: int = 7) -> None:
    rnd = random.Random(seed)
    counties = [r.code for r in regions.children("110000")] or ["110105"]
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("姓名,证件类型,证件号码,手机号码,电子邮箱,地区代码,志愿者编号,服务时长\n")
        for i in range(rows):
            # distinct numbers: birth day and sequence number cycle through i
            born = 19600101 + (i // 999) % 40 * 10000 + (i // 39960) % 12 * 100 + (i // 479520) % 28
            seq = i % 999 + 1
            body = f"110105{born:08d}{seq:03d}"
            number = body + ric.calc_check_digit(body + "0")
            name = rnd.choice(SURNAMES) + rnd.choice(GIVEN) + rnd.choice(GIVEN)
            mobile = f"13{rnd.randrange(10**9):09d}"
            region = counties[i % len(counties)]
            f.write(f"{name},居民身份证,{number},{mobile},v{i}@example.com,{region},L{i:08d},{i % 200}\n")


async def main(rows: int, keep: bool, workers: int) -> None:
    url = await create_database("bench_import")
    settings = IdentitySettings(environment="test", database_url=url)
    try:
        engine = create_async_engine(url)
        await upgrade_head(engine, SERVICE_ROOT)
        await engine.dispose()
        conn = await asyncpg.connect(asyncpg_dsn(url))
        await conn.execute("CREATE TABLE baseline_records (LIKE volunteer_records INCLUDING ALL)")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "volunteers.csv"
            started = time.perf_counter()
            generate(path, rows)
            print(
                f"generated {rows:,} rows ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.1f} s"
            )

            started = time.perf_counter()
            summary = await run_import(settings, path, file_format="csv", workers=workers)
            t_import = time.perf_counter() - started
            print(
                f"import ({workers} worker processes): {summary.status}, "
                f"inserted {summary.inserted_rows:,}, rejected {summary.rejected_rows:,}"
            )

            started = time.perf_counter()
            again = await run_import(settings, path, file_format="csv", workers=workers)
            t_again = time.perf_counter() - started

        columns = [
            "id",
            "document_type",
            "id_blind_index",
            "id_ciphertext",
            "id_key_id",
            "id_masked",
            "real_name",
            "birth_date",
            "source",
            "status",
            "history",
            "created_at",
        ]
        final = [tuple(r) for r in await conn.fetch(f"SELECT {', '.join(columns)} FROM volunteer_records")]
        started = time.perf_counter()
        await conn.copy_records_to_table("baseline_records", records=final, columns=columns)
        t_copy = time.perf_counter() - started
        await conn.close()

        import_rate, copy_rate = rows / t_import, len(final) / t_copy
        print(f"importer:      {t_import:6.1f} s  {import_rate:10,.0f} rows/s")
        print(f"raw COPY:      {t_copy:6.1f} s  {copy_rate:10,.0f} rows/s  (final rows, identical table)")
        print(f"ratio:         {import_rate / copy_rate:6.1%}  (target >= 40 %; 1 M rows under 60 s)")
        print(f"re-import:     {t_again:6.1f} s, inserted {again.inserted_rows:,} (idempotent: expect 0)")
        print(
            f"load average during the run: {' / '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs"
        )
    finally:
        if not keep:
            await drop_database(url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--workers", type=int, default=1, help="importer processes (as identity-import --workers)")
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.keep, args.workers))
