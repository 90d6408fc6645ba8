"""Events produced by the teams service."""

from __future__ import annotations
