"""Handlers of other services' events."""

from shared.messaging.consumer import Handlers

handlers = Handlers("projects")
