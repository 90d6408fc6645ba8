"""Handlers of other services' events (team memberships come with the identity issue)."""

from shared.messaging.consumer import Handlers

handlers = Handlers("identity")
