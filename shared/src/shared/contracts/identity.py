"""Events produced by the identity service."""

from __future__ import annotations

import uuid
from typing import ClassVar

from shared.contracts.base import Event


class _AccountEvent(Event):
    producer: ClassVar[str] = "identity"
    aggregate_type: ClassVar[str] = "account"
    aggregate_field: ClassVar[str] = "account_id"


class AccountRegistered(_AccountEvent):
    """A person signed up. Carries what notifications needs to greet them, nothing more."""

    event_type: ClassVar[str] = "account.registered"
    summary: ClassVar[str] = "An account was created by sign-up"

    account_id: uuid.UUID
    username: str
    display_name: str
    email: str
    language: str = "zh"
