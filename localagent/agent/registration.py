"""The agent's standing with the API: which client to use, its registration, heartbeats, outage logging.

Usage::

    session = AgentSession(config_state=agent_state, embedded_url=None, client_factory=None, on_contact=mark)
    agent_id = session.ensure_registered(stop_event)   # retries with back-off while the API is unreachable
    reply = session.heartbeat(running_run_ids)         # None when it failed (logged)

The client follows the config in force: when a reload changes ``api.url``, the key or the timeout, the next
call gets a new client and registers again on that API. Clients of runs already started are not touched.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from localagent import __version__
from localagent.api.models import AgentRegister, Heartbeat, HeartbeatReply
from localagent.errors import ApiError, ApiNotFound

if TYPE_CHECKING:
    from localagent.api.client import ApiClient
    from localagent.config import LoadedConfig
    from localagent.config.model import AgentConfig

logger = logging.getLogger("localagent.agent")

ClientFactory = Callable[[str, "str | None", float], "ApiClient"]
ConfigState = Callable[[], "tuple[LoadedConfig, int, str | None]"]

RUN_CONFIG_TYPES = ("universal", "local")
_FIRST_BACKOFF = 0.25


def _api_client(url: str, key: str | None, timeout: float) -> ApiClient:
    from localagent.api.client import ApiClient

    return ApiClient(url, key=key, timeout=timeout)


class AgentSession:
    """Registration, heartbeat and the agent-key client for one agent (thread-safe)."""

    def __init__(
        self,
        *,
        config_state: ConfigState,
        embedded_url: str | None,
        client_factory: ClientFactory | None,
        on_contact: Callable[[], None],
    ) -> None:
        self._config_state = config_state
        self._embedded_url = embedded_url
        self._client_factory = client_factory or _api_client
        self._on_contact = on_contact
        self._lock = threading.Lock()
        self._register_lock = threading.Lock()
        self._client: ApiClient | None = None
        self._target: tuple[str, str | None, float] | None = None
        self._retired: list[ApiClient] = []
        self._agent_id: str | None = None
        self._registered_target: tuple[str, str | None, float] | None = None
        self._outage: str | None = None  # the first error of the current outage, while it lasts

    @property
    def agent_id(self) -> str | None:
        return self._agent_id

    def set_embedded_url(self, url: str) -> None:
        """The embedded API now listens at ``url`` (the next call switches client and registers there)."""
        self._embedded_url = url

    def api_url(self, config: AgentConfig | None = None) -> str:
        """The url of the API in force (the embedded server's when ``api.url = "embedded"``)."""
        if config is None:
            config = self._config_state()[0].config
        if config.api.url == "embedded":
            if self._embedded_url is None:
                raise ApiError("api.url is 'embedded' but no embedded API is running")
            return self._embedded_url
        return config.api.url

    def _wanted_target(self) -> tuple[str, str | None, float]:
        loaded = self._config_state()[0]
        return self.api_url(loaded.config), loaded.api_key, loaded.config.api.timeout

    def client(self) -> ApiClient:
        """The agent-key client of the API in force (a new one after the url, key or timeout changed)."""
        target = self._wanted_target()
        with self._lock:
            if self._client is None or target != self._target:
                if self._client is not None:
                    # Another thread may be mid-request on it; close it with the session.
                    self._retired.append(self._client)
                    logger.info("API changed: new claims go to %s", target[0])
                self._client = self._client_factory(*target)
                self._target = target
            return self._client

    def run_client(self, url: str, token: str, config: AgentConfig) -> ApiClient:
        """A client scoped to one run's token, on the API that handed the run out."""
        return self._client_factory(url, token, config.api.timeout)

    def ensure_registered(self, stop: threading.Event) -> str | None:
        """The agent id on the API in force, registering (again) as needed; None once ``stop`` is set."""
        backoff = 0.0
        while not stop.is_set():
            agent_id = self.register_once()
            if agent_id is not None:
                return agent_id
            poll_interval = self._config_state()[0].config.agent.poll_interval
            backoff = min(max(backoff * 2, _FIRST_BACKOFF), poll_interval)
            stop.wait(backoff)
        return None

    def register_once(self) -> str | None:
        """Register unless already registered on the API in force; the agent id, or None on failure (logged)."""
        with self._register_lock:
            target = self._wanted_target()
            if self._agent_id is not None and self._registered_target == target:
                return self._agent_id
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
                config_hash=loaded.hash,
                config_error=error,
            )
            api = self.client()
            try:
                registered = api.register_agent(request)
            except ApiError as exc:
                self.report_failure("register", exc, agent.poll_interval)
                return None
            self._agent_id, self._registered_target = registered.id, target
        self.report_recovery()
        self._on_contact()
        logger.info("registered with the API at %s as agent %s (%s)", api.url, registered.id, registered.name)
        return registered.id

    def forget(self, agent_id: str, reason: str) -> None:
        """Drop registration ``agent_id`` (the API forgot it); the next call registers again."""
        with self._register_lock:
            if self._agent_id == agent_id:
                logger.warning("%s (agent %s): registering again", reason, agent_id)
                self._agent_id = None

    def heartbeat(self, running_runs: list[str]) -> HeartbeatReply | None:
        """Tell the API we are alive and what runs here; the reply (with cancels), or None on failure."""
        agent_id = self._agent_id
        if agent_id is None:
            return None
        loaded, generation, error = self._config_state()
        beat = Heartbeat(
            running_runs=running_runs,
            labels=list(loaded.config.agent.effective_labels()),
            run_unlabeled=loaded.config.agent.run_unlabeled,
            config_generation=generation,
            config_hash=loaded.hash,
            config_error=error,
        )
        try:
            reply = self.client().heartbeat(agent_id, beat)
        except ApiNotFound:
            self.forget(agent_id, "the API no longer knows this agent")
            self.register_once()
            return None
        except ApiError as exc:
            logger.debug("heartbeat failed: %s", exc)
            return None
        self._on_contact()
        return reply

    def report_failure(self, what: str, exc: ApiError, retry_in: float) -> None:
        """Log an API failure: a warning when an outage starts, debug while it lasts."""
        with self._lock:
            first = self._outage is None
            if first:
                self._outage = str(exc)
        url = self._target[0] if self._target else "?"
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
            self._client, self._retired = None, []
        for client in clients:
            client.close()
