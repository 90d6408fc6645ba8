"""The unit of work writes every event an aggregate raised, however the caller held the aggregate."""

from __future__ import annotations

import gc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ClassVar

import pytest
from sqlalchemy import String, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.contracts import base as contracts_base
from shared.contracts.base import Event
from shared.db import EventSource, UnitOfWork, make_engine, make_session_factory, new_metadata
from shared.messaging.tables import define_messaging_tables


class Base(DeclarativeBase):
    metadata = new_metadata()


MESSAGING = define_messaging_tables(Base.metadata, "uowtest")


class Gadget(EventSource, Base):
    __tablename__ = "gadgets"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


class GadgetPoked(Event):
    event_type: ClassVar[str] = "gadget.poked"
    aggregate_type: ClassVar[str] = "gadget"
    aggregate_field: ClassVar[str] = "gadget_id"
    producer: ClassVar[str] = "uowtest"
    gadget_id: uuid.UUID


# A test-only event: out of the public registry (the AsyncAPI document and the routing check).
contracts_base._REGISTRY.pop((GadgetPoked.event_type, GadgetPoked.schema_version), None)


async def poke(uow: UnitOfWork, gadget_id: uuid.UUID) -> None:
    """A use case that raises an event without changing a column and keeps no reference."""
    gadget = await uow.session.get(Gadget, gadget_id)
    assert gadget is not None
    gadget.raise_event(GadgetPoked(gadget_id=gadget_id))


@pytest.fixture
async def factory(
    database_factory: Callable[[str], Awaitable[str]],
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a fresh database holding the gadgets and the messaging tables."""
    engine = make_engine(await database_factory("uow"), pool_size=2, max_overflow=0)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        yield make_session_factory(engine)
    finally:
        await engine.dispose()


async def test_event_of_an_unchanged_unreferenced_aggregate_is_written(
    factory: async_sessionmaker[AsyncSession],
) -> None:
    gadget_id = uuid.uuid4()
    async with UnitOfWork(factory, MESSAGING, producer="uowtest") as uow:
        uow.session.add(Gadget(id=gadget_id, name="g"))

    async with UnitOfWork(factory, MESSAGING, producer="uowtest") as uow:
        await poke(uow, gadget_id)
        gc.collect()  # the identity map holds clean objects weakly: this would drop it

    async with factory() as session:
        count = await session.scalar(select(func.count()).select_from(MESSAGING.outbox))
    assert count == 1


async def test_event_of_a_new_aggregate_nobody_references_is_written(
    factory: async_sessionmaker[AsyncSession],
) -> None:
    async def create(uow: UnitOfWork) -> None:
        gadget = Gadget(id=uuid.uuid4(), name="new")
        gadget.raise_event(GadgetPoked(gadget_id=gadget.id))  # raised before it joins the session
        uow.session.add(gadget)

    async with UnitOfWork(factory, MESSAGING, producer="uowtest") as uow:
        await create(uow)
        await uow.flush()  # persistent now: held weakly by the identity map
        gc.collect()

    async with factory() as session:
        count = await session.scalar(select(func.count()).select_from(MESSAGING.outbox))
    assert count == 1


async def test_events_raised_for_each_message_of_a_batch_carry_that_messages_ids(
    factory: async_sessionmaker[AsyncSession],
) -> None:
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with UnitOfWork(factory, MESSAGING, producer="uowtest") as uow:
        uow.session.add(Gadget(id=first, name="a"))
        uow.session.add(Gadget(id=second, name="b"))
        uow.session.add(Gadget(id=third, name="c"))
    async with UnitOfWork(factory, MESSAGING, producer="uowtest") as uow:
        uow.next_message("corr-1", "cause-1")
        await poke(uow, first)  # raised on an aggregate
        uow.next_message("corr-2", "cause-2")
        uow.raise_event(GadgetPoked(gadget_id=second))  # raised on the unit of work
        await poke(uow, third)
        gc.collect()

    async with factory() as session:
        rows = (
            await session.execute(
                select(
                    MESSAGING.outbox.c.aggregate_id,
                    MESSAGING.outbox.c.correlation_id,
                    MESSAGING.outbox.c.causation_id,
                ).order_by(MESSAGING.outbox.c.seq)
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (str(first), "corr-1", "cause-1"),
        (str(second), "corr-2", "cause-2"),
        (str(third), "corr-2", "cause-2"),
    ]


async def test_a_database_error_does_not_carry_the_statements_values(
    factory: async_sessionmaker[AsyncSession],
) -> None:
    """What a failed write logs (the error's text) names the statement, never the values: they are
    people's names, addresses and documents."""
    from sqlalchemy.exc import DBAPIError

    name = "王小明" * 20  # too long for the column: the database refuses it
    with pytest.raises(DBAPIError) as refused:
        async with UnitOfWork(factory, MESSAGING, producer="uowtest") as uow:
            uow.session.add(Gadget(id=uuid.uuid4(), name=name))
    assert "gadgets" in str(refused.value)
    assert "王小明" not in str(refused.value)
    assert "王小明" not in repr(refused.value)
