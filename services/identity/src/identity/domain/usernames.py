"""What a username may be (V1), and the one spelling the login throttle counts it under (V10).

Sign-up takes ASCII letters, digits, ``_``, ``.`` and ``-`` only. The login finds an account
ignoring case with PostgreSQL's ``lower()``, which follows the database's locale: it folds some
non-ASCII letters onto ASCII ones (``lower('admİn')`` is ``admin``) where Python folds them
otherwise (``'admİn'.lower()`` is ``'admi̇n'``). A username sign-up could never have produced is
therefore looked up as typed only, never ignoring case (no account has it, but for a national
admin ``create-admin`` made under such a name before it refused them), and the throttle counts
every spelling of a name under one key.
"""

from __future__ import annotations

import re
import unicodedata

MIN_LENGTH = 3
MAX_LENGTH = 64
#: what sign-up takes (``SignUpRequest.username``), and so what any account's username is
PATTERN = r"^[A-Za-z0-9_.-]+$"
_PATTERN = re.compile(PATTERN, re.ASCII)


def could_exist(username: str) -> bool:
    """Whether sign-up could have produced this username (``fullmatch``: ``$`` would also take a
    final newline)."""
    return MIN_LENGTH <= len(username) <= MAX_LENGTH and _PATTERN.fullmatch(username) is not None


def fold(username: str) -> str:
    """The spelling the throttle counts a typed username under: ASCII lower case, as the lookup
    (``Accounts.by_username``) compares the usernames that exist. A look-alike that cannot exist
    (``İ`` or a full-width letter for an ASCII one, an ``i`` with a combining dot) is folded onto
    the ASCII name it imitates (compatibility decomposition, marks dropped), so it meets that
    name's lock too rather than getting guesses of its own."""
    decomposed = unicodedata.normalize("NFKD", username.strip())
    # on ASCII, str.lower is ASCII lower case: a name that can exist keeps its one key
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
