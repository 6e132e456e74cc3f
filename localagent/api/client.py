"""The requests-based client of the orchestration API, shared by the agent and the shell commands.

Usage::

    with ApiClient("http://127.0.0.1:4300", key=None, timeout=10.0) as api:
        flows = api.list_flows()

One ``requests.Session`` (one keep-alive connection pool) per API: :meth:`ApiClient.scoped` gives a client
with another bearer key on the same pool, so every run of an agent shares a few connections instead of
opening one each. The key travels as a per-request header, never as session state, and the session keeps no
cookies, so scoped clients used from several threads at once cannot see each other's credentials (the
session's urllib3 pool is thread-safe; the session object itself is only read after construction).
Idempotent calls (every GET, ``append_logs``, ``set_state`` and
``heartbeat``) are retried with exponential back-off (:class:`~localagent.backoff.Backoff`, jittered) on
connection errors and 5xx answers; the others are sent once. The agent makes its clients with
``retries=0``: it retries itself, so that a stop interrupts the wait. Every foreign exception (requests, a
body that is not JSON, a body that is not the expected model) is translated into the ``localagent.errors``
tree in one place, :meth:`ApiClient._call`. Replies are read
leniently: a field this version does not know (added by a newer server) is ignored, not refused.

Several URLs (servers of one database, ``ApiClient("http://a:4300 http://b:4300")`` or an
:class:`~localagent.api.endpoints.Endpoints` shared by many clients): each request goes to the URL in use and,
when it cannot be reached or a proxy answers 502/503/504, at once to the next URL, each at most once per
attempt; see :mod:`localagent.api.endpoints` for the choice and the way back to the first URL.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from http.cookiejar import DefaultCookiePolicy
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from pydantic import BaseModel, TypeAdapter, ValidationError
from requests.adapters import HTTPAdapter

from localagent import __version__
from localagent.api.endpoints import FAILOVER_STATUSES, Endpoints, split_urls
from localagent.api.http_errors import connection_reason as _connection_reason
from localagent.api.http_errors import rejection as _rejection
from localagent.api.http_errors import response_detail as _detail
from localagent.api.http_errors import snippet as _snippet
from localagent.api.http_errors import unreachable as _unreachable
from localagent.api.log_batch import LogRow, encode_rows
from localagent.api.models import (
    Agent,
    AgentRegister,
    ClaimReply,
    ClaimRequest,
    Flow,
    FlowRun,
    FlowRunBulkCreate,
    FlowRunCreate,
    FlowRunsCreated,
    FlowSpec,
    Health,
    Heartbeat,
    HeartbeatReply,
    LogBatch,
    LogBatchResult,
    LogLine,
    LogPage,
    StateName,
    StateReport,
    StateReportResults,
    StateReports,
    StateUpdate,
)
from localagent.api.port import HTTP_CAPABILITIES, Capabilities
from localagent.api.schedule_models import Schedule
from localagent.backoff import Backoff
from localagent.errors import (
    ApiError,
    ApiRejected,
    ApiUnavailable,
)

T = TypeVar("T")

_MAX_BACKOFF = 5.0
_FLOW_LIST: TypeAdapter[list[Flow]] = TypeAdapter(list[Flow])
_RUN_LIST: TypeAdapter[list[FlowRun]] = TypeAdapter(list[FlowRun])
_AGENT_LIST: TypeAdapter[list[Agent]] = TypeAdapter(list[Agent])
_SCHEDULE_LIST: TypeAdapter[list[Schedule]] = TypeAdapter(list[Schedule])
_POOL_SIZE = 32  # keep-alive connections kept per host: every run slot, the claim and the heartbeat at once
_JSON = "application/json"


class ApiClient:
    """A client of one orchestration API; the HTTP implementation of the orchestrator port
    (:class:`~localagent.api.port.Orchestrator`).

    ``with ApiClient("http://127.0.0.1:4300", key=None, timeout=10.0) as api: api.list_flows()``

    ``timeout`` bounds every request; long-polls (``claim``, ``read_logs`` with ``wait``) get ``wait +
    timeout``. An idempotent call is tried ``1 + retries`` times, sleeping ``backoff``, ``2 * backoff``, ...
    (at most 5 s, jittered into the upper half of each) in between.
    """

    def __init__(
        self,
        url: str | Endpoints,
        *,
        key: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
    ) -> None:
        endpoints = url if isinstance(url, Endpoints) else Endpoints(split_urls(url) or (url,))
        for each in endpoints.urls:
            if not each.startswith(("http://", "https://")):
                raise ApiUnavailable(f"API url must start with http:// or https://, got {each!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self._endpoints = endpoints
        self._timeout = timeout
        self._retries = max(0, retries)
        self._backoff = max(0.0, backoff)
        self._auth = {"Authorization": f"Bearer {key}"} if key else {}
        self._owns_session = True
        self._session = _new_session(endpoints.urls[0])

    def scoped(self, key: str) -> ApiClient:
        """A client of the same API with bearer ``key``, sharing this client's connection pool.

        Closing the scoped client leaves the pool open; closing this client closes it (a scoped client used
        after that opens new connections on demand).
        """
        clone = object.__new__(ApiClient)
        clone._endpoints = self._endpoints
        clone._timeout = self._timeout
        clone._retries = self._retries
        clone._backoff = self._backoff
        clone._auth = {"Authorization": f"Bearer {key}"}
        clone._owns_session = False
        clone._session = self._session
        return clone

    @property
    def url(self) -> str:
        """The API's base url in use now, without a trailing slash (with several URLs it follows failover)."""
        return self._endpoints.current

    @property
    def endpoints(self) -> Endpoints:
        """The API's URLs and the one in use (shared with every scoped client)."""
        return self._endpoints

    @property
    def capabilities(self) -> Capabilities:
        return HTTP_CAPABILITIES

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ApiClient({self._endpoints.current!r})"

    # -- endpoints ---------------------------------------------------------------------------------

    def health(self) -> Health:
        return self._call("GET", "/api/health", Health.model_validate, idempotent=True)

    def register_flow(self, spec: FlowSpec) -> Flow:
        return self._call("POST", "/api/flows", Flow.model_validate, body=spec)

    def list_flows(self) -> list[Flow]:
        return self._call("GET", "/api/flows", _FLOW_LIST.validate_python, idempotent=True)

    def get_flow(self, name: str, version: int | None = None) -> Flow:
        params = {"version": version} if version is not None else None
        return self._call("GET", f"/api/flows/{_segment(name)}", Flow.model_validate, params=params, idempotent=True)

    def list_schedules(self, flow: str | None = None) -> list[Schedule]:
        """Every flow's schedules, or one flow's (404 for an unknown flow), with their next fire times."""
        path = "/api/schedules" if flow is None else f"/api/flows/{_segment(flow)}/schedules"
        return self._call("GET", path, _SCHEDULE_LIST.validate_python, idempotent=True)

    def set_schedule_paused(self, flow: str, name: str, paused: bool) -> Schedule:
        action = "pause" if paused else "resume"
        path = f"/api/flows/{_segment(flow)}/schedules/{_segment(name)}/{action}"
        return self._call("POST", path, Schedule.model_validate, idempotent=True)

    def create_run(self, request: FlowRunCreate) -> FlowRun:
        return self._call("POST", "/api/flow_runs", FlowRun.model_validate, body=request)

    def create_runs(self, requests: Sequence[FlowRunCreate]) -> FlowRunsCreated:
        """Many runs in one request and one transaction (at most ``BULK_CREATE_MAX``); not retried."""
        body = FlowRunBulkCreate(runs=list(requests))
        return self._call("POST", "/api/flow_runs/bulk", FlowRunsCreated.model_validate, body=body)

    def list_runs(
        self,
        *,
        flow: str | None = None,
        state: StateName | None = None,
        agent: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[FlowRun]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if flow is not None:
            params["flow"] = flow
        if state is not None:
            params["state"] = StateName(state).value
        if agent is not None:
            params["agent"] = agent
        return self._call("GET", "/api/flow_runs", _RUN_LIST.validate_python, params=params, idempotent=True)

    def get_run(self, run_id: str) -> FlowRun:
        return self._call("GET", f"/api/flow_runs/{_segment(run_id)}", FlowRun.model_validate, idempotent=True)

    def cancel_run(self, run_id: str) -> FlowRun:
        return self._call("POST", f"/api/flow_runs/{_segment(run_id)}/cancel", FlowRun.model_validate)

    def set_state(self, run_id: str, update: StateUpdate) -> FlowRun:
        # A repeat of the run's current state is a no-op on the server, so a resend is safe.
        return self._call(
            "POST", f"/api/flow_runs/{_segment(run_id)}/state", FlowRun.model_validate, body=update, idempotent=True
        )

    def set_states(self, reports: Sequence[StateReport]) -> StateReportResults:
        """Report the states of many runs in one request (needs an API key, not a run token).

        Safe to resend like :meth:`set_state`: a repeated report is a no-op on the server.
        """
        body = StateReports(reports=list(reports))
        what = f"{len(body.reports)} state reports"
        return self._call(
            "POST", "/api/flow_runs/states", StateReportResults.model_validate, body=body, idempotent=True, what=what
        )

    def append_logs(self, run_id: str, lines: Sequence[LogLine]) -> LogBatchResult:
        # Lines carry their seq; the server stores a resent seq once, so a resend is safe.
        batch = LogBatch(lines=list(lines))
        path = f"/api/flow_runs/{_segment(run_id)}/logs"
        return self._call("POST", path, LogBatchResult.model_validate, body=batch, idempotent=True)

    def append_logs_raw(self, run_id: str, body: bytes, count: int) -> LogBatchResult:
        """Send a log batch already encoded as the JSON of a ``LogBatch`` holding ``count`` lines.

        The agent's shipper builds each batch's bytes once, so no model per line is made on this side.
        """
        path = f"/api/flow_runs/{_segment(run_id)}/logs"
        what = f"{count} log lines"
        return self._call("POST", path, LogBatchResult.model_validate, data=body, idempotent=True, what=what)

    def append_log_rows(self, run_id: str, rows: list[LogRow]) -> LogBatchResult:
        """Send rows ``(run_id, seq, epoch seconds, stream, text)`` (encoded here: HTTP takes JSON)."""
        return self.append_logs_raw(run_id, encode_rows(rows), len(rows))

    def read_logs(self, run_id: str, *, after: int = -1, limit: int = 1000, wait: float = 0.0) -> LogPage:
        params = {"after": after, "limit": limit, "wait": wait}
        path = f"/api/flow_runs/{_segment(run_id)}/logs"
        return self._call("GET", path, LogPage.model_validate, params=params, idempotent=True, wait=wait)

    def register_agent(self, request: AgentRegister) -> Agent:
        return self._call("POST", "/api/agents", Agent.model_validate, body=request)

    def heartbeat(self, agent_id: str, beat: Heartbeat) -> HeartbeatReply:
        path = f"/api/agents/{_segment(agent_id)}/heartbeat"
        return self._call("POST", path, HeartbeatReply.model_validate, body=beat, idempotent=True)

    def claim(self, agent_id: str, request: ClaimRequest) -> ClaimReply:
        # Not retried: a lost answer may hold Submitted runs; the agent's loop polls again on its own.
        path = f"/api/agents/{_segment(agent_id)}/claim"
        return self._call("POST", path, ClaimReply.model_validate, body=request, wait=request.wait)

    def disconnect_agent(self, agent_id: str) -> Agent:
        """Tell the API this agent stops cleanly. Sent once: it is called on the way out."""
        return self._call("POST", f"/api/agents/{_segment(agent_id)}/disconnect", Agent.model_validate)

    def list_agents(self, *, history: bool = False) -> list[Agent]:
        """The latest record of each agent name and host; ``history``: every record."""
        params = {"all": "true"} if history else None
        return self._call("GET", "/api/agents", _AGENT_LIST.validate_python, params=params, idempotent=True)

    # -- transport: the one place foreign exceptions become ApiErrors --------------------------------

    def _call(
        self,
        method: str,
        path: str,
        reply: Callable[..., T],
        *,
        body: BaseModel | None = None,
        params: Mapping[str, Any] | None = None,
        data: bytes | None = None,
        idempotent: bool = False,
        wait: float = 0.0,
        what: str = "",
    ) -> T:
        """Send one request (retrying it if ``idempotent``) and validate the answer as ``reply``.

        The body is ``body`` serialised by pydantic in one pass, or ``data`` (JSON bytes) as given.
        """
        what = f"{method} {path}" + (f" ({what})" if what else "")
        payload = body.model_dump_json().encode() if body is not None else data
        headers = {**self._auth, "Content-Type": _JSON} if payload is not None else self._auth
        timeout = (self._timeout, self._timeout + max(0.0, wait))
        attempts = 1 + (self._retries if idempotent else 0)
        backoff = Backoff(first=self._backoff, cap=_MAX_BACKOFF)
        for attempt in range(1, attempts + 1):
            last = attempt == attempts
            failures: list[tuple[str, BaseException | None, str]] = []
            order = self._endpoints.order()
            for url in order:
                try:
                    response = self._session.request(
                        method, url + path, params=params, data=payload, headers=headers, timeout=timeout
                    )
                except requests.RequestException as exc:
                    failures.append((url, exc, _connection_reason(exc)))
                    continue
                status = response.status_code
                if status in FAILOVER_STATUSES and url != order[-1]:
                    failures.append((url, None, f"HTTP {status}"))  # a proxy with no server behind it
                    response.close()
                    continue
                if status not in FAILOVER_STATUSES:
                    self._endpoints.answered(url, [(failed, why) for failed, _, why in failures])
                if status < 500 or last:
                    return self._decode(response, reply, what, url)
                response.close()
                break
            else:
                if last:
                    raise _unreachable(failures, what, timeout[1], attempts)
            time.sleep(backoff.next_delay())
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def _decode(self, response: requests.Response, reply: Callable[..., T], what: str, url: str) -> T:
        status = response.status_code
        if status >= 400:
            raise _rejection(status, _detail(response) or f"the API answered {what} with HTTP {status}")
        try:
            data = response.json()
        except (ValueError, requests.RequestException) as exc:
            raise ApiRejected(
                status, f"the API at {url} answered {what} with a body that is not JSON: {_snippet(response)}"
            ) from exc
        try:
            # Fields this client does not know are ignored: a newer server may add some to its replies.
            return reply(data, extra="ignore")
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            raise ApiRejected(
                status,
                f"the API at {url} answered {what} with an unexpected body ({where}: {first['msg']}); "
                "are the client and server versions compatible?",
            ) from exc


def _new_session(url: str) -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = f"localagent/{__version__}"
    session.headers["Accept"] = _JSON
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # no state shared between keys
    # The environment's proxy and CA settings (HTTP(S)_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE)
    # are read once here, for this API's url, instead of on every request as requests does by default
    # (about 1 ms per call); a config reload that changes the API builds a new session. No .netrc lookup:
    # the API takes a bearer key.
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=_POOL_SIZE)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _segment(value: str) -> str:
    return quote(value, safe="")


__all__ = ["ApiClient", "ApiError"]
