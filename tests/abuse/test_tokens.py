"""Bad tokens on every authenticated operation of every service: all 401, never 2xx/5xx.

The operations come from each service's OpenAPI document (those declaring the bearer scheme),
so an endpoint added later is covered without touching this file.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import jwt
from fastapi import FastAPI

from shared.auth import TokenSigner, TokenVerifier

AUTH_CODES = {"unauthenticated", "token_invalid", "token_expired"}


def _apps(signer: TokenSigner, verifier: TokenVerifier) -> dict[str, FastAPI]:
    from identity.bootstrap import build_runtime as build_identity
    from identity.config import IdentitySettings
    from identity.main import create_app as identity_app
    from notifications.bootstrap import build_runtime as build_notifications
    from notifications.config import NotificationsSettings
    from notifications.main import create_app as notifications_app
    from projects.bootstrap import build_runtime as build_projects
    from projects.config import ProjectsSettings
    from projects.main import create_app as projects_app
    from teams.bootstrap import build_runtime as build_teams
    from teams.config import TeamsSettings
    from teams.main import create_app as teams_app

    common: dict[str, Any] = {"environment": "test", "jwt_issuer": signer.issuer, "jwt_audience": signer.audience}
    ids = IdentitySettings(**common)
    ts, ps, ns = TeamsSettings(**common), ProjectsSettings(**common), NotificationsSettings(**common)
    return {
        "identity": identity_app(ids, build_identity(ids, signer=signer)),
        "teams": teams_app(ts, build_teams(ts, verifier=verifier)),
        "projects": projects_app(ps, build_projects(ps, verifier=verifier)),
        "notifications": notifications_app(ns, build_notifications(ns, verifier=verifier)),
    }


def _secured_operations(app: FastAPI) -> Iterator[tuple[str, str]]:
    for path, item in app.openapi().get("paths", {}).items():
        for method, op in item.items():
            if method in {"get", "post", "put", "patch", "delete"} and op.get("security"):
                yield method.upper(), re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


def _bad_tokens(signer: TokenSigner) -> dict[str, str]:
    account = uuid.uuid4()
    pem = TokenSigner.generate_pem()
    forged = TokenSigner(pem, issuer=signer.issuer, audience=signer.audience, kid=signer.kid)
    wrong_aud = TokenSigner(pem, issuer=signer.issuer, audience="somebody-else", kid=signer.kid)
    claims = {
        "iss": signer.issuer,
        "aud": signer.audience,
        "sub": str(account),
        "iat": 1,
        "exp": 4_102_444_800,
        "roles": ["national_admin"],
    }
    # the algorithm-confusion attack: HS256 keyed with the published key (RSA modulus, or Ed25519 point)
    published = signer.public_jwk()
    public_material = published.get("n") or published["x"]
    return {
        "expired": signer.issue(account, ttl=timedelta(minutes=-10)),
        "wrong_audience": _resign(signer, {"aud": "somebody-else"}),
        "wrong_issuer": _resign(signer, {"iss": "https://evil.example"}),
        "alg_none": jwt.encode(claims, None, algorithm="none", headers={"kid": signer.kid}),  # type: ignore[arg-type]
        "algorithm_confusion": jwt.encode(claims, public_material, algorithm="HS256", headers={"kid": signer.kid}),
        "forged_signature": forged.issue(account, roles=["national_admin"]),
        "other_key_wrong_audience": wrong_aud.issue(account),
        "malformed": "not.a.token",
        "garbage": "x" * 40,
    }


def _resign(signer: TokenSigner, override: dict[str, Any]) -> str:
    # A token the real key signs but whose claims are wrong for this deployment.
    token = signer.issue(uuid.uuid4(), roles=["national_admin"])
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(override)
    return jwt.encode(claims, signer._key, algorithm=signer.algorithm, headers={"kid": signer.kid})  # type: ignore[arg-type]


async def test_every_secured_operation_refuses_bad_tokens_with_401(
    signer: TokenSigner, verifier_for: Callable[..., TokenVerifier]
) -> None:
    apps = _apps(signer, verifier_for())
    tokens = _bad_tokens(signer)
    tried = refused = 0
    failures: list[str] = []
    for name, app in apps.items():
        operations = list(_secured_operations(app))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            for method, path in operations:
                for kind, token in [("missing", None), *tokens.items()]:
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    response = await client.request(method, path, headers=headers, json={})
                    tried += 1
                    code = (
                        response.json().get("code")
                        if response.headers.get("content-type", "").startswith("application/json")
                        else None
                    )
                    if response.status_code == 401 and code in AUTH_CODES:
                        refused += 1
                    else:
                        failures.append(f"{name} {method} {path} [{kind}] → {response.status_code} {code}")
    print(f"\nbad-token requests tried={tried} refused_401={refused} let_through_or_wrong={len(failures)}")
    assert tried > 0, "no authenticated operation found: the OpenAPI documents lost their bearer scheme"
    assert not failures, "\n".join(failures[:30])
