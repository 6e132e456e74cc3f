"""The orchestrator port: every call the agent makes to whatever hands it runs.

The agent (``localagent.agent``) depends on these Protocols alone, never on a concrete client or on the
server. Implementations:

- :class:`~localagent.api.client.ApiClient`: localagent's HTTP API (a remote ``localagent server``, or the
  embedded API of another agent);
- ``localagent.embedded.inprocess.InProcessClient``: the embedded API in this very process (no HTTP);
- a Prefect 3 work pool (see ``localagent/prefect/``, when present).

The conversation, in the order the agent has it::

    api = factory(url, key, timeout)                       # an Orchestrator with the agent's key
    agent = api.register_agent(AgentRegister(...))         # who we are, what we run
    reply = api.claim(agent.id, ClaimRequest(slots=2, wait=10.0, ...))   # long-poll: runs to start, cancels
    run_api = api.scoped(claimed.token)                    # a RunChannel: that run's token only
    run_api.set_state(run_id, StateUpdate(state=RUNNING, pid=42))        # one report ...
    api.set_states([StateReport(...), ...])                # ... or many runs' reports in one call
    run_api.append_logs_raw(run_id, body, count)           # output as JSON bytes, or
    run_api.append_log_rows(run_id, rows)                  # ... as rows, when capabilities.output_rows
    beat = api.heartbeat(agent.id, Heartbeat(running_runs=[...], ...))  # beat.cancel: runs to stop

Cancels reach the agent two ways, both answers of this port: ``ClaimReply.cancel`` (a claim long-poll,
``slots = 0`` when the agent is full, returns at once when one of its runs is to be cancelled) and
``HeartbeatReply.cancel``.

Errors are the ``localagent.errors`` tree: ``ApiUnavailable`` (unreachable, a timeout, or a 5xx: worth a
retry), ``ApiNotFound`` (the orchestrator forgot the agent or the run), ``ApiUnauthorized``,
``ApiConflict`` (a state the run can no longer take), ``ApiRejected`` (anything else refused). No
implementation retries on its own: the agent's callers retry with one back-off policy
(:mod:`localagent.agent.retry`), so a stop interrupts a retry at once and retries never nest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

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


@dataclass(frozen=True)
class Capabilities:
    """What an orchestrator's client does well; the agent picks the cheaper call from these, never by probing.

    ``state_batches``: :meth:`Orchestrator.set_states` takes many runs' reports in one call (else each run
    reports alone with :meth:`RunChannel.set_state`). ``output_rows``: :meth:`RunChannel.append_log_rows`
    stores rows without encoding them (else the agent builds JSON bytes once for
    :meth:`RunChannel.append_logs_raw`). Both calls always work; a capability only says which is cheaper.
    ``web_view``: the orchestrator serves localagent's web view at its url (localagent's own API does; a
    Prefect server has its own UI elsewhere), so the agent may point people at it.
    """

    state_batches: bool = True
    output_rows: bool = False
    web_view: bool = True


HTTP_CAPABILITIES = Capabilities(state_batches=True, output_rows=False)


class StateChannel(Protocol):
    """Reports one run's states, one at a time."""

    def set_state(self, run_id: str, update: StateUpdate) -> FlowRun:
        """Move the run to ``update.state``; a repeat of its current state is a no-op (safe to resend)."""
        ...


class StateBatchChannel(Protocol):
    """Reports the states of many runs in one call (the agent's key, not a run's token)."""

    def set_states(self, reports: Sequence[StateReport]) -> StateReportResults:
        """One result per report, in order; a repeated report is a no-op (safe to resend)."""
        ...


class OutputChannel(Protocol):
    """Ships a run's output lines, numbered by the agent (a resent seq is stored once)."""

    @property
    def capabilities(self) -> Capabilities: ...

    def append_logs_raw(self, run_id: str, body: bytes, count: int) -> LogBatchResult:
        """Store ``count`` lines given as the JSON bytes of a ``LogBatch``."""
        ...

    def append_log_rows(self, run_id: str, rows: list[LogRow]) -> LogBatchResult:
        """Store lines given as rows ``(run_id, seq, epoch seconds, stream, text)``."""
        ...


class RunChannel(StateChannel, OutputChannel, Protocol):
    """A client scoped to one run's token: its states and its output. Closing it frees no shared pool."""

    @property
    def url(self) -> str:
        """Where the run reports (its process is told this url too)."""
        ...

    def close(self) -> None: ...


class Orchestrator(RunChannel, StateBatchChannel, Protocol):
    """A client with the agent's key: registration, heartbeats, claims, and everything a run channel does."""

    def register_agent(self, request: AgentRegister) -> Agent:
        """Register (or register again) this agent; its id is used by every later call."""
        ...

    def heartbeat(self, agent_id: str, beat: Heartbeat) -> HeartbeatReply:
        """Tell what runs here (keeps its runs alive); ``reply.cancel`` lists runs to stop. 404: forgotten."""
        ...

    def disconnect_agent(self, agent_id: str) -> Agent:
        """This agent stops cleanly (listed as stopped, not lost). Sent once, on the way out."""
        ...

    def claim(self, agent_id: str, request: ClaimRequest) -> ClaimReply:
        """Long-poll up to ``request.wait`` seconds for up to ``request.slots`` runs (and cancels).

        Never resent by the agent after an error: a lost answer may hold runs the orchestrator handed out
        (it takes them back by itself).
        """
        ...

    def scoped(self, token: str) -> RunChannel:
        """A client of the same orchestrator with a run's ``token``, sharing this client's connections."""
        ...


OrchestratorFactory = Callable[[str, "str | None", float], Orchestrator]
"""``factory(url, key, timeout)``: an :class:`Orchestrator` client with ``key`` whose calls take at most
``timeout`` seconds (plus the wait of a long-poll)."""
