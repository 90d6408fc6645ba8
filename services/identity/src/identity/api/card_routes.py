"""The volunteer card (V9): PDF and PNG for the holder, and the public verification endpoint."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import HTMLResponse

from identity import cards, errors
from identity.api.deps import Runtime, UoW
from identity.api.schemas import CardCheckOut
from identity.card_page import render_check_page
from shared.auth import CurrentPrincipal
from shared.errors import (
    TOKEN_INVALID,
    UNAUTHENTICATED,
    VALIDATION_FAILED,
    error_responses,
    preferred_language,
    prefers_html,
)
from shared.web import SELF_CONTAINED_PAGE_POLICY

router = APIRouter(tags=["volunteer card"])
CARD_ERRORS = error_responses(UNAUTHENTICATED, TOKEN_INVALID, errors.CARD_REQUIRES_VERIFICATION)


def _with_content(content: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    return {**CARD_ERRORS, 200: {"content": content}}


@router.get(
    "/api/v1/accounts/me/card.pdf",
    summary="My volunteer service card as a PDF to print (verified volunteers)",
    response_class=Response,
    responses=_with_content({"application/pdf": {}}),
)
async def card_pdf(principal: CurrentPrincipal, uow: UoW, runtime: Runtime) -> Response:
    async with uow:
        face = await cards.current_card(runtime, uow, principal.account_id)
    data = await asyncio.to_thread(cards.render_pdf, face)
    return Response(data, media_type="application/pdf", headers={"Cache-Control": "no-store"})


@router.get(
    "/api/v1/accounts/me/card.png",
    summary="My volunteer service card as an image for the phone (verified volunteers)",
    response_class=Response,
    responses=_with_content({"image/png": {}}),
)
async def card_png(principal: CurrentPrincipal, uow: UoW, runtime: Runtime) -> Response:
    async with uow:
        face = await cards.current_card(runtime, uow, principal.account_id)
    data = await asyncio.to_thread(cards.render_png, face, font_path=runtime.settings.card_font_path)
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.post(
    "/api/v1/accounts/me/cards",
    status_code=204,
    summary="Replace my card (lost phone or printout): the old card's QR code stops being current",
    responses=CARD_ERRORS,
)
async def renew_card(principal: CurrentPrincipal, uow: UoW, runtime: Runtime) -> Response:
    async with uow:
        await cards.current_card(runtime, uow, principal.account_id, renew=True)
    return Response(status_code=204)


@router.get(
    "/api/v1/card-verifications",
    response_model=CardCheckOut,
    summary="Public: is this card genuine and current? Shows only the masked name and the volunteer number",
    description=(
        "The URL in the card's QR code. A browser (a phone that scanned the code), which ranks "
        "`text/html` above JSON in `Accept`, gets the same answer as a page, in Chinese or English "
        "(`Accept-Language`); API clients get JSON."
    ),
    responses={
        **error_responses(VALIDATION_FAILED),
        200: {"content": {"text/html": {"schema": {"type": "string"}}}},
    },
)
async def verify_card(
    uow: UoW,
    runtime: Runtime,
    response: Response,
    # anything that is not a card's token (a QR code read wrong, a link cut short) is "not genuine",
    # shown to a phone as the page that says so rather than as a validation error
    token: str = Query("", max_length=400),
    accept: Annotated[str | None, Header()] = None,
    accept_language: Annotated[str | None, Header()] = None,
) -> CardCheckOut | HTMLResponse:
    async with uow:
        result = await cards.check(runtime, uow, token)
    # the answer changes when the card is replaced or the verification withdrawn, and with Accept
    varies = {"Cache-Control": "no-store", "Vary": "Accept, Accept-Language"}
    if prefers_html(accept):
        page = render_check_page(result, preferred_language(accept_language))
        return HTMLResponse(
            page,
            headers={
                **varies,
                "Content-Security-Policy": SELF_CONTAINED_PAGE_POLICY,
            },
        )
    response.headers.update(varies)
    return CardCheckOut(
        genuine=result.genuine,
        current=result.current,
        masked_name=result.masked_name,
        volunteer_number=result.volunteer_number,
        issued_on=result.issued_on,
    )
