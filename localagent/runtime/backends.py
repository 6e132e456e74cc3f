"""Which orchestrator the agent talks to, chosen once at start-up from ``api.url``.

Usage::

    with contextlib.ExitStack() as stack:
        backend = open_backend(loaded, stack)       # starts the embedded API when api.url = "embedded"
        Agent(..., client_factory=backend.client_factory, embedded_url=backend.embedded_url)

``api.url = "embedded"`` serves the API inside this process (:mod:`localagent.embedded`) and gives the
agent in-process clients of it; any other url gets the HTTP client. Both implement the orchestrator port
(:mod:`localagent.api.port`); the agent never learns which one it has.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from localagent.api.endpoints import Endpoints, SwitchListener, split_urls
from localagent.api.port import Orchestrator, OrchestratorFactory

if TYPE_CHECKING:
    from localagent.config import LoadedConfig
    from localagent.config.model import AgentConfig
    from localagent.embedded.api import EmbeddedApi

EMBEDDED = "embedded"


def http_client(url: str, key: str | None, timeout: float) -> Orchestrator:
    """The orchestrator port over HTTP (an ``OrchestratorFactory``), each client with URLs of its own.

    ``retries=0``: the agent retries every call itself, with one back-off a stop interrupts at once
    (:mod:`localagent.agent.retry`), so the client must not retry underneath it.
    """
    from localagent.api.client import ApiClient

    return ApiClient(url, key=key, timeout=timeout, retries=0)


class HttpClients:
    """The agent's HTTP ``OrchestratorFactory``: clients of the same servers share one :class:`Endpoints`.

    ``factory = HttpClients(config_of, on_switch=metrics.count_api_switch); factory("http://a http://b", key, 10.0)``

    Every client made for URLs that share a server with an earlier call (the agent's client after a new key,
    the clients of runs, a reload that edits the list) gets the same ``Endpoints``, updated to the new list:
    so one failover choice holds for the whole agent, and runs already started follow a new list.
    """

    def __init__(self, config_of: Callable[[], AgentConfig], on_switch: SwitchListener | None = None) -> None:
        self._config_of = config_of
        self._on_switch = on_switch
        self._lock = threading.Lock()
        self._known: list[Endpoints] = []

    def __call__(self, url: str, key: str | None, timeout: float) -> Orchestrator:
        from localagent.api.client import ApiClient

        return ApiClient(self.endpoints(url, timeout), key=key, timeout=timeout, retries=0)

    def endpoints(self, url: str, timeout: float) -> Endpoints:
        """The shared ``Endpoints`` for ``url`` (space-separated URLs), made the first time.

        When they share a server with the config in force, they take its list: a client made for an older
        list (a run claimed just before a reload) must not undo the reload.
        """
        urls = split_urls(url) or (url,)
        config = self._config_of()
        with self._lock:
            shared = next((known for known in self._known if set(known.urls) & set(urls)), None)
            if shared is None:
                shared = Endpoints(urls, on_switch=self._on_switch)
                self._known.append(shared)
        in_force = config.api.urls if config.api.url != EMBEDDED else ()
        if set(in_force) & set(shared.urls):
            shared.replace(in_force)
        shared.failback_interval = config.api.failback_interval
        shared.probe_timeout = min(timeout, 5.0)
        return shared


@dataclass(frozen=True)
class Backend:
    """The agent's way to its orchestrator: a client factory, and the embedded API when there is one."""

    client_factory: OrchestratorFactory
    embedded: EmbeddedApi | None = None
    embedded_url: str | None = None


def open_backend(
    loaded: LoadedConfig,
    stack: contextlib.ExitStack,
    *,
    config_of: Callable[[], AgentConfig] | None = None,
    on_switch: SwitchListener | None = None,
) -> Backend:
    """The backend ``loaded`` asks for; an embedded API is stopped when ``stack`` closes.

    ``config_of`` gives the config in force (default: ``loaded``'s), ``on_switch`` hears every failover.
    """
    http = HttpClients(config_of or (lambda: loaded.config), on_switch)
    if loaded.config.api.url != EMBEDDED:
        return Backend(http)
    from localagent.embedded.api import EmbeddedApi

    embedded = EmbeddedApi()
    url = embedded.start(loaded)
    stack.callback(embedded.stop)

    def client(url: str, key: str | None, timeout: float) -> Orchestrator:
        # The embedded API's clients while it serves ``url``; other APIs (a reload to api.url = [...]) over HTTP.
        return embedded.client(url, key, timeout) if embedded.server_at(url) is not None else http(url, key, timeout)

    return Backend(client, embedded, url)


def prefect_or(
    loaded_of: Callable[[], LoadedConfig],
    fallback: OrchestratorFactory,
    *,
    on_prefect_key: Callable[[str, str | None, str], None] | None = None,
) -> OrchestratorFactory:
    """``fallback``, or a Prefect 3 work pool's client: for the agent's key while the config in force says
    ``api.kind = "prefect"``, and always for a Prefect run's token (``prefect-run:<id>``).

    A run keeps reporting to the server that handed it out, of the kind it came from, whatever a reload
    changed since. ``loaded_of`` gives the config in force: the ``[prefect]`` table is read at every claim
    and heartbeat, so a reload that changes the pool or the queues applies to the next claim
    (:mod:`localagent.prefect`). ``on_prefect_key(url, key, auth)`` learns each Prefect server's key (the
    agent's watchdog, to report runs the agent's death left running).
    """
    from localagent.prefect.factory import PrefectFactory
    from localagent.prefect.jobs import RUN_TOKEN_PREFIX

    prefect = PrefectFactory(lambda: loaded_of().config.prefect, loaded_of, on_key=on_prefect_key)

    def factory(url: str, key: str | None, timeout: float) -> Orchestrator:
        if key is not None and key.startswith(RUN_TOKEN_PREFIX):
            return prefect(url, key, timeout)
        if loaded_of().config.api.kind == "prefect":
            return prefect(url, key, timeout)
        return fallback(url, key, timeout)

    return factory
