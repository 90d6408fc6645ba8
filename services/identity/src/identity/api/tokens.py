"""HTTP routes for logging in and credentials (V10)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from identity import errors, sessions
from identity.api.deps import ClientAddress, Runtime
from identity.api.schemas import (
    AcceptedOut,
    LoginRequest,
    PasswordChangeRequest,
    PasswordResetConfirmation,
    PasswordResetRequest,
    RefreshRequest,
    TokenOut,
)
from shared.errors import VALIDATION_FAILED, error_responses

router = APIRouter(tags=["tokens"])


def _out(pair: sessions.TokenPair) -> TokenOut:
    return TokenOut(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


@router.post(
    "/api/v1/tokens",
    response_model=TokenOut,
    summary="Log in: a short-lived access token and a rotating refresh token",
    responses=error_responses(
        errors.INVALID_CREDENTIALS, errors.TOO_MANY_ATTEMPTS, errors.PASSWORD_CHANGE_REQUIRED, VALIDATION_FAILED
    ),
)
async def log_in(body: LoginRequest, runtime: Runtime, address: ClientAddress) -> TokenOut:
    return _out(await sessions.log_in(runtime, username=body.username, password=body.password, address=address))


@router.post(
    "/api/v1/token-refreshes",
    response_model=TokenOut,
    summary="Trade a refresh token for a new pair (the old one is spent; showing it again ends the session)",
    responses=error_responses(errors.REFRESH_TOKEN_INVALID, errors.REFRESH_TOKEN_REUSED, VALIDATION_FAILED),
)
async def refresh(body: RefreshRequest, runtime: Runtime) -> TokenOut:
    return _out(await sessions.refresh(runtime, body.refresh_token))


@router.post(
    "/api/v1/token-revocations",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Log out: revoke the refresh token and its whole chain",
    responses=error_responses(VALIDATION_FAILED),
)
async def log_out(body: RefreshRequest, runtime: Runtime) -> Response:
    await sessions.log_out(runtime, body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/api/v1/password-changes",
    response_model=TokenOut,
    summary="Change the password with the current (or temporary) one; ends every other session",
    responses=error_responses(
        errors.INVALID_CREDENTIALS,
        errors.TOO_MANY_ATTEMPTS,
        errors.PASSWORD_LENGTH,
        errors.PASSWORD_TOO_COMMON,
        errors.PASSWORD_CONTAINS_USERNAME,
        errors.PASSWORD_UNCHANGED,
        VALIDATION_FAILED,
    ),
)
async def change_password(body: PasswordChangeRequest, runtime: Runtime, address: ClientAddress) -> TokenOut:
    pair = await sessions.change_password(
        runtime,
        username=body.username,
        current_password=body.current_password,
        new_password=body.new_password,
        address=address,
    )
    return _out(pair)


@router.post(
    "/api/v1/password-resets",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=AcceptedOut,
    summary="Forgotten password: email a one-use reset link (same answer whether the account exists or not)",
    responses=error_responses(VALIDATION_FAILED),
)
async def request_reset(body: PasswordResetRequest, runtime: Runtime) -> AcceptedOut:
    await sessions.request_reset(runtime, username=body.username, email=body.email)
    return AcceptedOut()


@router.post(
    "/api/v1/password-resets/confirmations",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Set a new password with the emailed token (30 minutes, one use)",
    responses=error_responses(
        errors.RESET_TOKEN_INVALID,
        errors.PASSWORD_LENGTH,
        errors.PASSWORD_TOO_COMMON,
        errors.PASSWORD_CONTAINS_USERNAME,
        VALIDATION_FAILED,
    ),
)
async def confirm_reset(body: PasswordResetConfirmation, runtime: Runtime) -> Response:
    await sessions.confirm_reset(runtime, token=body.token, new_password=body.new_password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/.well-known/jwks.json", summary="Public keys that verify access tokens")
async def jwks(runtime: Runtime) -> dict[str, Any]:
    return runtime.signer.jwks()
