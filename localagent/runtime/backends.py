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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from localagent.api.port import Orchestrator, OrchestratorFactory

if TYPE_CHECKING:
    from localagent.config import LoadedConfig
    from localagent.embedded.api import EmbeddedApi

EMBEDDED = "embedded"


def http_client(url: str, key: str | None, timeout: float) -> Orchestrator:
    """The orchestrator port over HTTP (an ``OrchestratorFactory``).

    ``retries=0``: the agent retries every call itself, with one back-off a stop interrupts at once
    (:mod:`localagent.agent.retry`), so the client must not retry underneath it.
    """
    from localagent.api.client import ApiClient

    return ApiClient(url, key=key, timeout=timeout, retries=0)


@dataclass(frozen=True)
class Backend:
    """The agent's way to its orchestrator: a client factory, and the embedded API when there is one."""

    client_factory: OrchestratorFactory
    embedded: EmbeddedApi | None = None
    embedded_url: str | None = None


def open_backend(loaded: LoadedConfig, stack: contextlib.ExitStack) -> Backend:
    """The backend ``loaded`` asks for; an embedded API is stopped when ``stack`` closes."""
    if loaded.config.api.url != EMBEDDED:
        return Backend(http_client)
    from localagent.embedded.api import EmbeddedApi

    embedded = EmbeddedApi()
    url = embedded.start(loaded)
    stack.callback(embedded.stop)
    return Backend(embedded.client, embedded, url)


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
