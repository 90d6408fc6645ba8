"""Which passwords are acceptable (V10): 8–128 characters, not among the commonest, not the username."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from identity import errors
from shared.errors import AppError

MIN_LENGTH = 8
MAX_LENGTH = 128


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = resources.files("identity.data").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def check_password(password: str, *, username: str | None = None) -> None:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise AppError(errors.PASSWORD_LENGTH, {"min": MIN_LENGTH, "max": MAX_LENGTH})
    if password.lower() in common_passwords():
        raise AppError(errors.PASSWORD_TOO_COMMON)
    if username and len(username) >= 3 and username.lower() in password.lower():
        raise AppError(errors.PASSWORD_CONTAINS_USERNAME)
