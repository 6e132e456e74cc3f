"""The agent's standing with the API: which client to use, its registration, heartbeats, outage logging.

Usage::

    session = AgentSession(config_state=agent_state, embedded_url=None, client_factory=factory, on_contact=mark)
    endpoint = session.ensure_registered(stop_event)   # retries with back-off while the API is unreachable
    endpoint.client.claim(endpoint.agent_id, request)
    cancels = session.heartbeat(runs_of=table.ids)      # the API in force and every API left behind

The client follows the config in force: when a reload changes ``api.url``, the key or the timeout, the next
call gets a new client. A registration belongs to an *API* (its url, or ``"embedded"`` for the in-process
API, which keeps its database when it moves to another address): a new key or a moved embedded listener
keeps the agent id; a new ``api.url`` registers on the new API, and the old API is *left behind*: it keeps
getting heartbeats (listing the runs it handed out, so it does not declare the agent lost and crash them)
until its last run has ended. Clients of runs already started are not touched.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from localagent import __version__
from localagent.agent.retry import Backoff
from localagent.api.endpoints import join_urls, same_servers, split_urls
from localagent.api.models import AgentRegister, Heartbeat, LostPolicy
from localagent.api.port import Orchestrator, OrchestratorFactory, RunChannel
from localagent.config.render import public_hash
from localagent.errors import ApiError, ApiNotFound

if TYPE_CHECKING:
    from localagent.config import LoadedConfig
    from localagent.config.model import AgentConfig

logger = logging.getLogger("localagent.agent")

ConfigState = Callable[[], "tuple[LoadedConfig, int, str | None]"]
RunsOf = Callable[[str], "list[str]"]

RUN_CONFIG_TYPES = ("universal", "local")
MAX_BEAT_INTERVAL = 10.0
"""The longest wait between two heartbeats (``agent.poll_interval`` when shorter)."""


def beat_interval(config: AgentConfig) -> float:
    return min(config.agent.poll_interval, MAX_BEAT_INTERVAL)


def lost_policy(config: AgentConfig) -> LostPolicy:
    """What this agent does with its runs when cut off from the API, as the server is told."""
    runs = config.runs
    return LostPolicy(
        on_api_lost=runs.on_api_lost,
        api_lost_after=runs.api_lost_after,
        stop_grace=runs.stop_grace,
        beat_interval=beat_interval(config),
    )


EMBEDDED = "embedded"
_FIRST_BACKOFF = 0.25


def api_name(config: AgentConfig) -> str:
    """The API a config talks to: ``"embedded"`` (wherever it listens), ``prefect:`` and the url for a Prefect
    server (a reload that changes only ``api.kind`` moves the agent to another API), else its url (several:
    space-separated).

    Two names that share a server URL (:func:`~localagent.api.endpoints.same_servers`) are one API: servers
    of one database, so a reload from one to the other keeps the registration and the runs' reports follow.
    """
    if config.api.url == EMBEDDED:
        return EMBEDDED
    if config.api.kind == "prefect":
        return f"prefect:{join_urls(config.api.url)}"
    return join_urls(config.api.url)


@dataclass(frozen=True)
class RunOrigin:
    """Where a run came from: ``api`` names the API (its url, or ``"embedded"``), ``url`` is where it reports."""

    api: str
    url: str


@dataclass(frozen=True)
class Endpoint:
    """The API in force, as one consistent snapshot: its name, this agent's id there, the agent-key client,
    and the url spec the client was made for (the factory's ``url``: runs' clients are made for it too)."""

    api: str
    agent_id: str
    client: Orchestrator
    url: str


@dataclass(frozen=True)
class _LeftBehind:
    """An API that handed out runs still running here; it gets heartbeats until the last one ends."""

    agent_id: str
    client: Orchestrator


class AgentSession:
    """Registration, heartbeat and the agent-key client for one agent (thread-safe)."""

    def __init__(
        self,
        *,
        config_state: ConfigState,
        embedded_url: str | None,
        client_factory: OrchestratorFactory,
        on_contact: Callable[[], None],
    ) -> None:
        self._config_state = config_state
        self._embedded_url = embedded_url
        self._client_factory = client_factory
        self._on_contact = on_contact
        self._lock = threading.Lock()
        self._register_lock = threading.Lock()
        self._client: Orchestrator | None = None
        self._target: tuple[str, str | None, float, str] | None = None
        self._api: str | None = None  # the API the current client talks to
        self._retired: list[Orchestrator] = []
        self._agent_id: str | None = None  # this agent's id on self._api
        self._left_behind: dict[str, _LeftBehind] = {}
        self._outage: str | None = None  # the first error of the current outage, while it lasts

    @property
    def agent_id(self) -> str | None:
        return self._agent_id

    def set_embedded_url(self, url: str) -> None:
        """The embedded API now listens at ``url`` (the next call switches client; same API, same agent id)."""
        self._embedded_url = url

    def api_url(self) -> str:
        """The url requests go to now (the embedded server's when ``api.url = "embedded"``; with several
        URLs, the one failover chose)."""
        with self._lock:
            client = self._client
        if client is not None:
            return client.url
        return split_urls(self._target_url(self._config_state()[0].config))[0]

    def _target_url(self, config: AgentConfig) -> str:
        """What the client factory is given: the embedded server's url, else the url(s) of ``api.url``."""
        if config.api.url == EMBEDDED:
            if self._embedded_url is None:
                raise ApiError("api.url is 'embedded' but no embedded API is running")
            return self._embedded_url
        return join_urls(config.api.url)

    def left_behind(self) -> list[str]:
        """APIs this agent no longer claims from but still heartbeats, because runs they handed out run here."""
        with self._lock:
            return sorted(self._left_behind)

    def client(self) -> Orchestrator:
        """The agent-key client of the API in force (a new one after the url, key or timeout changed)."""
        return self._current()[1]

    def _current(self) -> tuple[str, Orchestrator]:
        loaded = self._config_state()[0]
        api = api_name(loaded.config)
        config = loaded.config
        # The kind and prefect.auth change how the client talks, not where: a new client all the same.
        how = f"{config.api.kind}/{config.prefect.auth}" if config.api.kind == "prefect" else config.api.kind
        target = (self._target_url(config), loaded.api_key, config.api.timeout, how)
        with self._lock:
            if self._api is not None and api != self._api and same_servers(api, self._api):
                api = self._api  # another list of the same servers (one database): the same API
            if self._client is None or target != self._target:
                old_client, old_api = self._client, self._api
                self._client = self._client_factory(target[0], target[1], target[2])
                self._target, self._api = target, api
                if old_client is not None and old_api != api:
                    self._leave(old_api, old_client, api)
                elif old_client is not None:
                    # Same API (a new key, timeout or embedded address): the registration stays valid.
                    # Another thread may be mid-request on the old client; close it with the session.
                    self._retired.append(old_client)
                    logger.info("API client changed: new claims go to %s", target[0])
            return api, self._client

    def _leave(self, old_api: str | None, old_client: Orchestrator, api: str) -> None:
        """The config moved to another API (lock held): keep the old registration alive for its runs."""
        if self._agent_id is not None and old_api is not None:
            self._left_behind[old_api] = _LeftBehind(self._agent_id, old_client)
            logger.info(
                "API changed: new claims go to %s; runs handed out by %s keep reporting there until they end",
                api,
                old_api,
            )
        else:
            self._retired.append(old_client)
            logger.info("API changed: new claims go to %s", api)
        self._agent_id = None
        back_name = next((name for name in self._left_behind if same_servers(name, api)), None)
        back = self._left_behind.pop(back_name) if back_name is not None else None
        if back is not None:  # back to an API we still heartbeat: its registration is still good
            self._agent_id = back.agent_id
            self._retired.append(back.client)

    def run_client(self, url: str, token: str, config: AgentConfig) -> RunChannel:
        """A client scoped to one run's token, on the API that handed the run out.

        It shares the connection pool of the agent's client when that client still talks to ``url`` with the
        same timeout (the usual case), so runs reuse keep-alive connections; otherwise (the API changed
        since the claim) the run gets a client of its own.
        """
        with self._lock:
            shared, target = self._client, self._target
        if shared is not None and target is not None and target[0] == url and target[2] == config.api.timeout:
            return shared.scoped(token)
        return self._client_factory(url, token, config.api.timeout)

    def ensure_registered(self, stop: threading.Event) -> Endpoint | None:
        """The API in force and the agent id there, registering (again) as needed; None once ``stop`` is set."""
        backoff = Backoff(first=_FIRST_BACKOFF, cap=lambda: self._config_state()[0].config.agent.poll_interval)
        while not stop.is_set():
            endpoint = self.register_once()
            if endpoint is not None:
                return endpoint
            backoff.wait(stop)
        return None

    def endpoint(self) -> Endpoint | None:
        """The API in force if this agent is registered there (no request made), else None."""
        api, client = self._current()
        with self._lock:
            if self._agent_id is None or self._api != api or self._client is not client:
                return None
            return Endpoint(api, self._agent_id, client, self._target[0] if self._target else client.url)

    def register_once(self) -> Endpoint | None:
        """Register unless already registered on the API in force; the endpoint, or None on failure (logged)."""
        with self._register_lock:
            known = self.endpoint()
            if known is not None:
                return known
            api, client = self._current()
            loaded, generation, error = self._config_state()
            agent = loaded.config.agent
            request = AgentRegister(
                name=agent.name,
                labels=list(agent.effective_labels()),
                run_unlabeled=agent.run_unlabeled,
                run_config_types=list(RUN_CONFIG_TYPES),
                hostname=socket.gethostname(),
                version=__version__,
                config_generation=generation,
                config_hash=public_hash(loaded),
                config_error=error,
                max_concurrent_runs=agent.max_concurrent_runs,
                lost_policy=lost_policy(loaded.config),
            )
            try:
                registered = client.register_agent(request)
            except ApiError as exc:
                self.report_failure("register", exc, agent.poll_interval)
                return None
            with self._lock:
                if self._api != api:
                    return None  # the config moved to another API meanwhile: register there instead
                self._agent_id = registered.id
                url = self._target[0] if self._target else client.url
                endpoint = Endpoint(api, registered.id, self._client or client, url)
        self.report_recovery()
        self._on_contact()
        logger.info("registered with the API at %s as agent %s (%s)", client.url, registered.id, registered.name)
        if client.capabilities.web_view:
            logger.info("web view: %s/ (runs, output, flows and agents in a browser)", client.url)
        return endpoint

    def forget(self, agent_id: str, reason: str) -> None:
        """Drop registration ``agent_id`` (the API forgot it); the next call registers again."""
        with self._register_lock, self._lock:
            if self._agent_id == agent_id:
                logger.warning("%s (agent %s): registering again", reason, agent_id)
                self._agent_id = None

    def _beat(self, running_runs: list[str]) -> Heartbeat:
        loaded, generation, error = self._config_state()
        return Heartbeat(
            running_runs=running_runs,
            labels=list(loaded.config.agent.effective_labels()),
            run_unlabeled=loaded.config.agent.run_unlabeled,
            config_generation=generation,
            config_hash=public_hash(loaded),
            config_error=error,
            max_concurrent_runs=loaded.config.agent.max_concurrent_runs,
            lost_policy=lost_policy(loaded.config),
        )

    def heartbeat(self, runs_of: RunsOf, *, keep: Callable[[str], bool] = lambda api: False) -> list[str]:
        """Heartbeat the API in force and every API left behind; the run ids they asked to cancel.

        ``runs_of(api)`` lists the running runs that ``api`` handed out. An API left behind with no run left
        (and for which ``keep(api)`` is false: no claim on it is still in flight) gets no more heartbeats.
        Failures are logged; the API in force re-registers when it forgot this agent.
        """
        cancels: list[str] = []
        endpoint = self.endpoint()
        if endpoint is not None:
            try:
                reply = endpoint.client.heartbeat(endpoint.agent_id, self._beat(runs_of(endpoint.api)))
            except ApiNotFound:
                self._on_contact()  # an answer of the API: it is reachable
                self.forget(endpoint.agent_id, "the API no longer knows this agent")
                self.register_once()
            except ApiError as exc:
                logger.debug("heartbeat failed: %s", exc)
            else:
                self._on_contact()
                cancels.extend(reply.cancel)
        with self._lock:
            left_behind = list(self._left_behind.items())
        for api, old in left_behind:
            running = runs_of(api)
            if not running and not keep(api):
                self._drop_left_behind(api, old, "the last run it handed out has ended")
                continue
            try:
                cancels.extend(old.client.heartbeat(old.agent_id, self._beat(running)).cancel)
            except ApiNotFound:
                self._drop_left_behind(api, old, "it no longer knows this agent")
            except ApiError as exc:
                logger.debug("heartbeat to %s (left behind) failed: %s", api, exc)
        return cancels

    def _drop_left_behind(self, api: str, old: _LeftBehind, why: str) -> None:
        with self._lock:
            if self._left_behind.get(api) is not old:
                return
            del self._left_behind[api]
        old.client.close()
        logger.info("no more heartbeats to the previous API %s (agent %s): %s", api, old.agent_id, why)

    def disconnect(self) -> None:
        """Tell every API this agent is registered with that it stops cleanly (``agent ls``: stopped, not lost).

        Skipped during an outage (the shutdown should not wait for an API that is down); failures are logged.
        """
        with self._lock:
            if self._outage is not None:
                return
            registrations = [(old.agent_id, old.client) for old in self._left_behind.values()]
            if self._agent_id is not None and self._client is not None:
                registrations.insert(0, (self._agent_id, self._client))
        for agent_id, client in registrations:
            try:
                client.disconnect_agent(agent_id)
            except ApiError as exc:
                logger.debug("could not tell %s that agent %s stops: %s", client.url, agent_id, exc)

    def report_failure(self, what: str, exc: ApiError, retry_in: float) -> None:
        """Log an API failure: a warning when an outage starts, debug while it lasts."""
        with self._lock:
            first = self._outage is None
            if first:
                self._outage = str(exc)
        url = ", ".join(split_urls(self._target[0])) if self._target else "?"
        if first:
            logger.warning(
                "API at %s failed (%s): %s; retrying with back-off (at most every %gs), running runs carry on",
                url,
                what,
                exc,
                retry_in,
            )
        else:
            logger.debug("API at %s still failing (%s): %s", url, what, exc)

    def report_recovery(self) -> None:
        with self._lock:
            was_down, self._outage = self._outage is not None, None
        if was_down:
            logger.info("API reachable again")

    def close(self) -> None:
        with self._lock:
            clients = [c for c in (self._client, *self._retired) if c is not None]
            clients.extend(old.client for old in self._left_behind.values())
            self._client, self._retired, self._left_behind = None, [], {}
        for client in clients:
            client.close()
