"""The agent's client of its own embedded API: the calls it makes for every run skip HTTP.

Usage::

    client = InProcessClient(url, key=None, timeout=10.0, locate=embedded.server_at)
    client.claim(agent_id, request)      # on the embedded server's event loop, no socket, no JSON
    client.scoped(token).append_logs_raw(run_id, body, count)

With ``api.url = "embedded"`` the API runs in the agent's own process, yet every claim, state report, log
batch and heartbeat of the agent used to go out over loopback HTTP and back in: request and response
encoded, parsed and routed twice, which cost more of the process's one interpreter than the work itself.
This client makes those calls straight into the server's operations layer (:mod:`localagent.server.operations`),
the very functions the HTTP routes call (the same checks, the same store calls, the same errors), and keeps
HTTP for everything else (a flow run's
own process still reaches the API at ``url`` with its token).

A claim runs on the server's event loop, where the claim long-poll lives; the other calls run on the
caller's thread, as the server's worker threads would run them. Each call looks up the server at ``url``
when it is made (``locate``), so a listener restarted with a new key is found again; while none serves
``url`` the call goes over HTTP, which reports the outage (and retries) as it would for a remote API.
Authentication is skipped: the caller is the process that hosts the API.

Errors are those of the HTTP client: a store's ``ApiRejected`` (404, 409, ...) as raised, a storage
failure as a 503, a malformed value as a 422, and anything unexpected as a 500, logged here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi.exceptions import RequestValidationError

from localagent.api.client import ApiClient
from localagent.api.log_batch import LogRow
from localagent.api.models import (
    Agent,
    AgentRegister,
    ClaimReply,
    ClaimRequest,
    FlowRun,
    Heartbeat,
    HeartbeatReply,
    LogBatchResult,
    StateReport,
    StateReportResults,
    StateUpdate,
)
from localagent.api.port import Capabilities
from localagent.errors import ApiError, ApiRejected, ApiUnavailable, StorageError
from localagent.server import operations
from localagent.server.database import InvalidData
from localagent.server.http_errors import describe_validation_errors

if TYPE_CHECKING:
    from localagent.server.runner import ServerThread
    from localagent.server.services import Services

log = logging.getLogger("localagent.embedded")

T = TypeVar("T")

Locate = Callable[[str], "ServerThread | None"]
_CAPABILITIES = Capabilities(state_batches=True, output_rows=True)


async def _still_connected() -> bool:
    """``is_disconnected`` for an in-process claim: the caller cannot hang up (it waits for the answer)."""
    return False


class InProcessClient:
    """The orchestrator port (:class:`~localagent.api.port.Orchestrator`) of the embedded API in this process.

    ``http`` is the HTTP client of the same url and key, used while no embedded server serves the url.
    """

    def __init__(self, http: ApiClient, *, timeout: float, locate: Locate) -> None:
        self._http = http
        self._timeout = timeout
        self._locate = locate

    @property
    def url(self) -> str:
        return self._http.url

    @property
    def capabilities(self) -> Capabilities:
        return _CAPABILITIES

    def scoped(self, token: str) -> InProcessClient:
        return InProcessClient(self._http.scoped(token), timeout=self._timeout, locate=self._locate)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> InProcessClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"InProcessClient({self.url!r})"

    # -- the calls made for every run ----------------------------------------------------------------

    def claim(self, agent_id: str, request: ClaimRequest) -> ClaimReply:
        server = self._server()
        if server is None:
            return self._http.claim(agent_id, request)
        services, loop = server
        poll = operations.claim(services, agent_id, request, _still_connected)
        return self._on_loop(loop, poll, request.wait + self._timeout, "claim")

    def set_states(self, reports: Sequence[StateReport]) -> StateReportResults:
        server = self._server()
        if server is None:
            return self._http.set_states(reports)
        with _as_api_errors("state reports"):
            return operations.set_states(server[0], reports)

    def set_state(self, run_id: str, update: StateUpdate) -> FlowRun:
        server = self._server()
        if server is None:
            return self._http.set_state(run_id, update)
        with _as_api_errors("a state report"):
            return operations.set_state(server[0], run_id, update)

    def append_logs_raw(self, run_id: str, body: bytes, count: int) -> LogBatchResult:
        server = self._server()
        if server is None:
            return self._http.append_logs_raw(run_id, body, count)
        with _as_api_errors(f"{count} log lines"):
            return operations.append_logs(server[0], run_id, body)

    def append_log_rows(self, run_id: str, rows: list[LogRow]) -> LogBatchResult:
        """Store rows ``(run_id, seq, epoch seconds, stream, text)``: no JSON is made or parsed."""
        server = self._server()
        if server is None:
            return self._http.append_log_rows(run_id, rows)
        with _as_api_errors(f"{len(rows)} log lines"):
            return operations.append_log_rows(server[0], run_id, rows)

    def heartbeat(self, agent_id: str, beat: Heartbeat) -> HeartbeatReply:
        server = self._server()
        if server is None:
            return self._http.heartbeat(agent_id, beat)
        with _as_api_errors("a heartbeat"):
            return operations.heartbeat(server[0], agent_id, beat)

    def register_agent(self, request: AgentRegister) -> Agent:
        server = self._server()
        if server is None:
            return self._http.register_agent(request)
        with _as_api_errors("a registration"):
            return operations.register_agent(server[0], request)

    # -- plumbing ------------------------------------------------------------------------------------

    def _server(self) -> tuple[Services, asyncio.AbstractEventLoop] | None:
        """The services and loop of the embedded server at this client's url, or None (then: HTTP)."""
        server = self._locate(self.url)
        if server is None:
            return None
        loop = server.loop
        if loop is None:
            return None
        services: Services = server.app.state.services
        return services, loop

    def _on_loop(self, loop: asyncio.AbstractEventLoop, call: Coroutine[Any, Any, T], timeout: float, what: str) -> T:
        """Run ``call`` on the server's event loop and wait for its result (at most ``timeout`` seconds)."""
        try:
            future = asyncio.run_coroutine_threadsafe(call, loop)
        except RuntimeError as exc:  # the loop closed between the look-up and now
            call.close()
            raise ApiUnavailable(f"the embedded API at {self.url} stopped: {exc}") from exc
        with _as_api_errors(what):
            try:
                return future.result(timeout)
            except concurrent.futures.TimeoutError:
                future.cancel()  # a claim cancelled while it waits hands out nothing
                raise ApiUnavailable(
                    f"the embedded API at {self.url} did not answer {what} within {timeout:g}s"
                ) from None
            except concurrent.futures.CancelledError:
                raise ApiUnavailable(f"the embedded API at {self.url} stopped while answering {what}") from None
        raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def _as_api_errors(what: str) -> Iterator[None]:
    """The errors an HTTP client would have seen for the same failure (see the module docstring)."""
    try:
        yield
    except ApiError:
        raise
    except RequestValidationError as exc:
        raise ApiRejected(422, describe_validation_errors(exc.errors())) from exc
    except InvalidData as exc:
        raise ApiRejected(422, str(exc)) from exc
    except StorageError as exc:
        raise ApiRejected(503, str(exc)) from exc
    except Exception as exc:
        log.exception("the embedded API failed on %s", what)
        raise ApiRejected(500, f"the embedded API failed on {what}: {exc}") from exc
