"""Application stages (P5) and what a volunteer may still do with one (P6, P8)."""

from __future__ import annotations

from projects import errors
from shared.errors import AppError, Localised

APPLIED = "applied"
INTERVIEW = "interview"
ADMITTED = "admitted"
TRAINING = "training"
SERVING = "serving"
COMPLETED = "completed"
REJECTED = "rejected"
WITHDRAWN = "withdrawn"
LEFT = "left"

STAGES = (APPLIED, INTERVIEW, ADMITTED, TRAINING, SERVING, COMPLETED, REJECTED, WITHDRAWN, LEFT)
#: each stage as a refusal's message names it (the code stays in ``detail``)
STAGE_NAMES: dict[str, Localised] = {
    APPLIED: Localised("待审核", "applied"),
    INTERVIEW: Localised("面试", "interview"),
    ADMITTED: Localised("已录用", "admitted"),
    TRAINING: Localised("培训", "training"),
    SERVING: Localised("服务中", "serving"),
    COMPLETED: Localised("已完成", "completed"),
    REJECTED: Localised("未录用", "rejected"),
    WITHDRAWN: Localised("已撤回", "withdrawn"),
    LEFT: Localised("已退出", "left"),
}
#: waiting for an answer: the volunteer may delete it and sees the project's contact (P8)
PENDING = frozenset({APPLIED, INTERVIEW})
#: holding a place: hours may be recorded, the volunteer may leave while none are
ON_BOARD = frozenset({ADMITTED, TRAINING, SERVING})
#: stages that hold a place in the position's quota
HOLDS_PLACE = frozenset({ADMITTED, TRAINING, SERVING, COMPLETED})

#: moves a project's lead or team admin makes (admission has its own path: it takes a place)
_LEAD_MOVES: dict[str, frozenset[str]] = {
    APPLIED: frozenset({INTERVIEW, REJECTED}),
    INTERVIEW: frozenset({REJECTED}),
    ADMITTED: frozenset({TRAINING, SERVING}),
    TRAINING: frozenset({SERVING}),
    SERVING: frozenset({COMPLETED}),
}
#: stages a lead can set through the stage endpoint
LEAD_TARGETS = (INTERVIEW, TRAINING, SERVING, COMPLETED, REJECTED)


def _transition_refused(current: str, target: str) -> AppError:
    return AppError(
        errors.STAGE_TRANSITION_NOT_ALLOWED,
        {"current": current, "target": target},
        params={"current": STAGE_NAMES[current], "target": STAGE_NAMES[target]},
    )


def check_lead_move(current: str, target: str) -> None:
    if target not in _LEAD_MOVES.get(current, frozenset()):
        raise _transition_refused(current, target)


def check_admissible(current: str) -> None:
    if current not in PENDING:
        raise _transition_refused(current, ADMITTED)


#: the existing application was withdrawn between the statement and the look at its stage
_JUST_CHANGED = Localised("刚刚变更,请重试", "just changed; try again")


def already_applied(stage: str | None) -> AppError:
    """One application per volunteer and position (a withdrawn one aside): the refusal names the
    stage the existing one is at, so a volunteer not admitted reads that, not "pending"."""
    name = STAGE_NAMES[stage] if stage is not None else _JUST_CHANGED
    return AppError(errors.ALREADY_APPLIED, {"stage": stage}, params={"stage": name})


def check_withdrawable(current: str) -> None:
    """P6: only a pending application can be deleted by the volunteer."""
    if current not in PENDING:
        raise AppError(errors.WITHDRAW_NOT_PENDING, {"stage": current})


def check_can_leave(current: str, minutes_total: int) -> None:
    """P6: admitted with no hours may leave; with hours recorded, no longer."""
    if current not in ON_BOARD:
        raise AppError(errors.LEAVE_NOT_ADMITTED, {"stage": current})
    if minutes_total > 0:
        raise AppError(errors.LEAVE_REFUSED_HOURS_RECORDED, {"minutes_recorded": minutes_total})


def shows_contact(stage: str) -> bool:
    """P8: an application still waiting for an answer shows the project's published contact."""
    return stage in PENDING


def check_can_rate(stage: str) -> None:
    if stage not in (SERVING, COMPLETED):
        raise AppError(errors.RATING_NOT_ALLOWED, {"stage": stage})
