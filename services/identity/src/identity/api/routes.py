"""HTTP routes of the identity service: accounts and profile (V1–V4, V7, V8)."""

from __future__ import annotations

from fastapi import APIRouter, status

from identity import errors, registration
from identity.api.deps import ClientAddress, Runtime, UoW
from identity.api.schemas import AccountOut, ProfilePatch, SignUpRequest
from identity.api.views import account_out
from identity.repository import Accounts, Reviews
from shared.auth import CurrentPrincipal
from shared.errors import TOKEN_INVALID, UNAUTHENTICATED, VALIDATION_FAILED, AppError, error_responses

router = APIRouter(tags=["accounts"])

SIGN_UP_ERRORS = (
    errors.USERNAME_TAKEN,
    errors.ID_NUMBER_INVALID,
    errors.ID_NUMBER_AREA_INVALID,
    errors.DOCUMENT_NUMBER_INVALID,
    errors.BIRTH_DATE_REQUIRED,
    errors.BIRTH_DATE_INVALID,
    errors.BIRTH_DATE_MISMATCH,
    errors.TOO_YOUNG,
    errors.GUARDIAN_CONSENT_REQUIRED,
    errors.GUARDIAN_CONSENT_TIME_INVALID,
    errors.MOBILE_INVALID,
    errors.EMAIL_INVALID,
    errors.REGION_INVALID,
    errors.ID_NUMBER_ALREADY_REGISTERED,
    errors.ID_NUMBER_CONFLICT,
    errors.IMPORTED_NAME_MISMATCH,
    errors.IMPORTED_BIRTH_DATE_MISMATCH,
    errors.PASSWORD_LENGTH,
    errors.PASSWORD_TOO_COMMON,
    errors.PASSWORD_CONTAINS_USERNAME,
    errors.TOO_MANY_SIGN_UP_ATTEMPTS,
    VALIDATION_FAILED,
)


@router.post(
    "/api/v1/accounts",
    status_code=status.HTTP_201_CREATED,
    response_model=AccountOut,
    summary="Sign up as a volunteer (real name, ID document; claims an imported record with the same name)",
    responses=error_responses(*SIGN_UP_ERRORS),
)
async def sign_up(body: SignUpRequest, runtime: Runtime, address: ClientAddress) -> AccountOut:
    guardian = (
        registration.Guardian(
            name=body.guardian.name,
            relation=body.guardian.relation,
            phone=body.guardian.phone,
            consented_at=body.guardian.consented_at,
        )
        if body.guardian
        else None
    )
    account = await registration.sign_up(
        runtime,
        registration.SignUp(
            username=body.username,
            password=body.password,
            real_name=body.real_name,
            document_type=body.document_type,
            id_number=body.id_number,
            birth_date=body.birth_date,
            mobile=body.mobile,
            email=body.email,
            region_code=body.region_code,
            address=body.address,
            display_name=body.display_name,
            language=body.language,
            guardian=guardian,
        ),
        address=address,
    )
    return account_out(account, id_card_pending=False)  # just signed up: nothing uploaded yet


@router.get(
    "/api/v1/accounts/me",
    response_model=AccountOut,
    summary="My account: profile, masked ID number, verification status and expected date",
    responses=error_responses(UNAUTHENTICATED, TOKEN_INVALID, errors.ACCOUNT_NOT_FOUND),
)
async def me(principal: CurrentPrincipal, uow: UoW) -> AccountOut:
    async with uow:
        account = await Accounts(uow.session).get(principal.account_id)
        if account is None:
            raise AppError(errors.ACCOUNT_NOT_FOUND)
        return account_out(account, id_card_pending=await Reviews(uow.session).has_pending(account.id))


@router.patch(
    "/api/v1/accounts/me",
    response_model=AccountOut,
    summary="Change my mobile, email, address (any time) or name (only while not verified)",
    responses=error_responses(
        UNAUTHENTICATED,
        TOKEN_INVALID,
        errors.NAME_LOCKED_AFTER_VERIFICATION,
        errors.NOT_A_VOLUNTEER,
        errors.MOBILE_INVALID,
        errors.EMAIL_INVALID,
        VALIDATION_FAILED,
    ),
)
async def change_profile(body: ProfilePatch, principal: CurrentPrincipal, uow: UoW, runtime: Runtime) -> AccountOut:
    async with uow:
        account = await registration.change_profile(
            uow,
            principal.account_id,
            registration.ProfileChange(**body.model_dump(exclude_unset=True)),
            delay_seconds=runtime.settings.verification_delay_seconds,
        )
        pending = await Reviews(uow.session).has_pending(account.id)
    return account_out(account, id_card_pending=pending)
