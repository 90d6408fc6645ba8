"""HTTP routes of the identity service (thin: parse, call a use case, shape the answer)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from identity import services
from identity.api.deps import Runtime, UoW
from identity.api.schemas import AccountOut, LoginRequest, SignUpRequest, TokenOut
from identity.errors import INVALID_CREDENTIALS, USERNAME_TAKEN
from shared.errors import VALIDATION_FAILED, error_responses

router = APIRouter()


@router.post(
    "/api/v1/accounts",
    status_code=status.HTTP_201_CREATED,
    response_model=AccountOut,
    tags=["accounts"],
    summary="Sign up",
    responses=error_responses(USERNAME_TAKEN, VALIDATION_FAILED),
)
async def sign_up(body: SignUpRequest, uow: UoW, runtime: Runtime) -> AccountOut:
    async with uow:
        account = await services.sign_up(
            uow,
            runtime.passwords,
            username=body.username,
            password=body.password,
            display_name=body.display_name,
            email=str(body.email),
            language=body.language,
        )
    return AccountOut(id=account.id, username=account.username, display_name=account.display_name)


@router.post(
    "/api/v1/tokens",
    response_model=TokenOut,
    tags=["tokens"],
    summary="Log in",
    responses=error_responses(INVALID_CREDENTIALS, VALIDATION_FAILED),
)
async def log_in(body: LoginRequest, uow: UoW, runtime: Runtime) -> TokenOut:
    minutes = runtime.settings.access_token_minutes
    async with uow:
        token = await services.log_in(
            uow, runtime.passwords, runtime.signer, username=body.username, password=body.password, minutes=minutes
        )
    return TokenOut(access_token=token, expires_in=minutes * 60)


@router.get("/.well-known/jwks.json", tags=["tokens"], summary="Public keys that verify access tokens")
async def jwks(runtime: Runtime) -> dict[str, Any]:
    return runtime.signer.jwks()
