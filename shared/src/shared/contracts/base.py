"""The base of every event contract and the registry the consumers and AsyncAPI read."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

_REGISTRY: dict[tuple[str, int], type[Event]] = {}


class Event(BaseModel):
    """A fact, past tense. Subclasses set ``event_type`` (also the routing key), ``aggregate_type``
    and ``aggregate_field`` (the payload field holding the aggregate's id, used for ordering)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    aggregate_type: ClassVar[str]
    aggregate_field: ClassVar[str]
    producer: ClassVar[str]
    summary: ClassVar[str] = ""
    #: fields holding a credential (a one-use link): the producer's outbox keeps them only until
    #: the event is published (``shared.messaging.relay``); consumers get them whole
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "event_type" in cls.__dict__:
            key = (cls.event_type, cls.schema_version)
            if key in _REGISTRY and _REGISTRY[key] is not cls:
                raise TypeError(f"event {key} is declared twice")
            _REGISTRY[key] = cls

    def aggregate_key(self) -> str:
        return str(getattr(self, self.aggregate_field))


def event_class(event_type: str, schema_version: int = 1) -> type[Event]:
    _import_all()
    try:
        return _REGISTRY[(event_type, schema_version)]
    except KeyError:
        raise LookupError(f"unknown event {event_type} v{schema_version}") from None


def all_events() -> list[type[Event]]:
    _import_all()
    return sorted(_REGISTRY.values(), key=lambda c: (c.producer, c.event_type, c.schema_version))


def secret_fields_by_type() -> dict[str, tuple[str, ...]]:
    """Event types whose payload holds secrets, with those fields (see ``Event.secret_fields``)."""
    return {c.event_type: c.secret_fields for c in all_events() if c.secret_fields}


def _import_all() -> None:
    # Importing the modules registers their classes.
    from shared.contracts import identity, notifications, projects, teams  # noqa: F401
