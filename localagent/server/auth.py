"""Bearer authentication: server API keys (operators and agents) and run-scoped tokens.

Without configured keys the API is open (the server then only listens on loopback). With keys, a request
needs one of them, or the token of a claimed run, which may only read that run and write its state and logs.

The web view's login cookie (``SESSION_COOKIE``, HttpOnly, SameSite=Strict) is accepted in place of the header
for reads only (GET/HEAD), so the pages' scripts can follow a run through these endpoints; a cross-site page
can neither send that cookie (SameSite) nor read an answer (no CORS), and writes still need the header.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

import sqlalchemy as sa
from fastapi import Depends, Request

from localagent.errors import ApiUnauthorized
from localagent.server.claims import hash_token
from localagent.server.services import Services, quick, services
from localagent.server.tables import flow_runs


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key holder (``run_id`` None) or the process of one run."""

    run_id: str | None = None
    replaced: bool = False
    """The token of an attempt that was replaced after its agent went silent: its reports are late ones."""

    @property
    def is_operator(self) -> bool:
        return self.run_id is None


OPERATOR = Principal()
SESSION_COOKIE = "localagent_key"
_SAFE_METHODS = frozenset({"GET", "HEAD"})


def is_api_key(keys: tuple[str, ...], credential: str) -> bool:
    """Whether ``credential`` is one of ``keys``, compared in constant time."""
    return any(hmac.compare_digest(credential.encode(), key.encode()) for key in keys)


async def authenticate(request: Request, svc: Services = Depends(services)) -> Principal:
    keys = svc.settings.api_keys
    if not keys:
        return OPERATOR
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    credential = credential.strip()
    if not scheme and request.method in _SAFE_METHODS:
        cookie = request.cookies.get(SESSION_COOKIE, "")
        if cookie and is_api_key(keys, cookie):
            return OPERATOR
    if scheme.lower() != "bearer" or not credential:
        raise ApiUnauthorized(401, "missing API key: send 'Authorization: Bearer <key>'")
    if is_api_key(keys, credential):
        return OPERATOR
    found = await quick(svc, _run_of_token, svc, credential)
    if found is None:
        raise ApiUnauthorized(401, "invalid API key or run token")
    return Principal(run_id=found[0], replaced=found[1])


async def require_operator(principal: Principal = Depends(authenticate)) -> Principal:
    if not principal.is_operator:
        raise ApiUnauthorized(403, "a run token may only read its own run and write its own state and logs")
    return principal


async def require_run_access(run_id: str, principal: Principal = Depends(authenticate)) -> Principal:
    if not principal.is_operator and principal.run_id != run_id:
        raise ApiUnauthorized(403, f"this run token belongs to another flow run, not {run_id}")
    return principal


# A replaced lost attempt's token still reaches its run: that agent's late reports are recorded, not refused.
_RUN_OF_TOKEN = (
    sa.select(flow_runs.c.id, flow_runs.c.token_hash)
    .where(
        sa.or_(
            flow_runs.c.token_hash == sa.bindparam("token_hash"),
            flow_runs.c.lost_token_hash == sa.bindparam("token_hash"),
        )
    )
    .limit(1)
)


def _run_of_token(svc: Services, token: str) -> tuple[str, bool] | None:
    """The run a token belongs to, and whether it is a replaced attempt's token."""
    token_hash = hash_token(token)
    with svc.database.connect() as conn:
        row = conn.execute(_RUN_OF_TOKEN, {"token_hash": token_hash}).first()
    return None if row is None else (str(row.id), row.token_hash != token_hash)
