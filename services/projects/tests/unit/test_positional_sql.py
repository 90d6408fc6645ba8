"""``positional_sql`` caches compiled statements by id: a statement must never be answered with the
SQL of another that once had the same id."""

from sqlalchemy import text

from projects.unit_of_work import positional_sql


def test_a_statement_built_after_another_was_dropped_gets_its_own_sql() -> None:
    for n in range(200):
        # built, compiled and dropped at once: CPython hands a freed object's memory (and so its id)
        # to the next object of that size, which a cache keyed by id alone would then answer wrongly
        sql, names = positional_sql(text(f"SELECT :a_{n} AS x{n}"))
        assert (sql, names) == (f"SELECT $1 AS x{n}", [f"a_{n}"])


def test_the_parameters_come_in_the_order_asyncpg_binds_them() -> None:
    stmt = text("SELECT :b, :a, :b")
    assert positional_sql(stmt) == ("SELECT $1, $2, $1", ["b", "a"])
    assert positional_sql(stmt) == ("SELECT $1, $2, $1", ["b", "a"])  # the cached entry, the same
