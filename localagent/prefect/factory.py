"""``PrefectFactory``: the agent's ``OrchestratorFactory`` for ``api.kind = "prefect"``.

Usage::

    factory = PrefectFactory(settings_of=lambda: loaded().config.prefect, loaded_of=loaded)
    api = factory("http://127.0.0.1:4200/api", key, 10.0)       # the agent's client (its key)
    run_api = factory(url, "prefect-run:<id>", 10.0)            # a run's client: the agent's key there

Prefect has no run tokens: a run's "token" only names the run, and its client uses the agent's key for that
server: the key a client was last made with for that url, else the key in force when the config in force
points at that url (a run an earlier agent left, reported at start-up before any client was made).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from localagent.prefect.jobs import RUN_TOKEN_PREFIX
from localagent.prefect.orchestrator import PrefectOrchestrator
from localagent.prefect.rest import prefect_api_url

if TYPE_CHECKING:
    from localagent.config import LoadedConfig
    from localagent.config.model import PrefectSection


class PrefectFactory:
    """``factory(url, key, timeout)``, one client per call; ``settings_of`` is read at every claim and heartbeat."""

    def __init__(
        self,
        settings_of: Callable[[], PrefectSection],
        loaded_of: Callable[[], LoadedConfig] | None = None,
        *,
        on_key: Callable[[str, str | None, str], None] | None = None,
    ) -> None:
        self._settings_of = settings_of
        self._loaded_of = loaded_of
        self._on_key = on_key  # told (url, key, auth) of every server the agent serves: its watchdog
        self._keys: dict[str, tuple[str | None, str]] = {}  # api url -> (the agent's key there, prefect.auth)

    def __call__(self, url: str, key: str | None, timeout: float) -> PrefectOrchestrator:
        base = prefect_api_url(url)
        if key is not None and key.startswith(RUN_TOKEN_PREFIX):
            key, auth = self._keys.get(base) or self._key_in_force(base)
        else:
            auth = self._settings_of().auth
            self._keys[base] = (key, auth)
            if self._on_key is not None:
                self._on_key(url, key, auth)
        return PrefectOrchestrator(url, key, timeout, settings_of=self._settings_of, auth=auth)

    def _key_in_force(self, base: str) -> tuple[str | None, str]:
        if self._loaded_of is not None:
            loaded = self._loaded_of()
            if loaded.config.api.kind == "prefect" and prefect_api_url(loaded.config.api.urls[0]) == base:
                return loaded.api_key, loaded.config.prefect.auth
        return None, self._settings_of().auth
