"""The pages of the site (``NOTIFICATIONS_SITE_URL``) that emails link to: paths a frontend serves.

Listed in the README; a template gets the full address as ``link`` when its context has a ``path``.
"""

from __future__ import annotations

import uuid

#: log in (welcome, temporary password)
LOGIN = "/login"
#: 修改资料 → 身份信息: the name (while not verified) and the ID-card upload for manual review
IDENTITY = "/account/identity"
#: the volunteer's number and electronic card
CARD = "/account/card"
#: the registrations waiting for the reader's review
REVIEWS = "/reviews"
#: the projects recruiting
PROJECTS = "/projects"
#: register a team (a rejected registration can no longer change: its applicant registers again)
TEAM_REGISTRATION = "/teams/new"


def team(team_id: uuid.UUID) -> str:
    """A team's page (its registration and review status)."""
    return f"/teams/{team_id}"


def project(project_id: uuid.UUID) -> str:
    """A project's page (positions, applications, closing and extension)."""
    return f"/projects/{project_id}"
