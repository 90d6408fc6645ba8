"""Events produced by the projects service."""

from __future__ import annotations
