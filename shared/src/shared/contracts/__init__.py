"""Event contracts: the public payload models of every event, grouped by producing service.

Changes are additive; a breaking change is a new ``schema_version``.
"""

from shared.contracts.base import Event, all_events, event_class

__all__ = ["Event", "all_events", "event_class"]
