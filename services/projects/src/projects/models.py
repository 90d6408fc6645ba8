"""Tables of the projects service."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from shared.db import new_metadata
from shared.messaging.tables import define_messaging_tables


class Base(DeclarativeBase):
    metadata = new_metadata()


metadata = Base.metadata
messaging = define_messaging_tables(metadata, "projects")
