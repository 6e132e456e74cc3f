"""An :class:`Agent` running in a thread against a fake orchestrator, its runs stood in for by fake executions."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

from localagent.agent.metrics import AgentMetrics
from localagent.agent.reload.coordinator import ReloadCoordinator
from localagent.agent.signals import SignalInbox
from localagent.agent.supervisor import Agent
from localagent.api.models import StateName
from localagent.config import LoadedConfig
from tests.support.fake_orchestrator import FakeConsole, FakeExecution, FakeServer


class Harness:
    """An Agent running in a thread against a FakeServer, with FakeExecutions for runs."""

    def __init__(
        self,
        loaded: LoadedConfig,
        server: FakeServer,
        *,
        auto_finish: StateName | None = None,
        load: Callable[[], LoadedConfig] | None = None,
    ) -> None:
        self.server = server
        self.executions: list[FakeExecution] = []
        self.inbox = SignalInbox()
        self.console = FakeConsole()
        self.metrics = AgentMetrics()
        self.agent = Agent(
            loaded,
            reaper=object(),  # type: ignore[arg-type]
            console=self.console,  # type: ignore[arg-type]
            metrics=self.metrics,
            inbox=self.inbox,
            client_factory=server.client_factory,  # type: ignore[arg-type]
            execution_factory=functools.partial(FakeExecution, auto_finish=auto_finish, log=self.executions),
        )
        # SIGHUP goes through the one reload path, as in `localagent run`.
        self.agent.set_reload_handler(ReloadCoordinator(self.agent, load or (lambda: loaded)).reload)
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.exit_code = self.agent.run()

    def join(self, timeout: float = 10.0) -> int:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the agent did not stop"
        self.inbox.close()
        assert self.exit_code is not None
        return self.exit_code

    def started_ids(self) -> list[str]:
        return [ex.run_id for ex in self.executions]
