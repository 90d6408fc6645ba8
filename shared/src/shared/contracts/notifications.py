"""Events produced by the notifications service."""

from __future__ import annotations
