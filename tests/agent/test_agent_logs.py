"""The agent's own log: level and format ("text" or one JSON object a line), reconfigured in place."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from localagent.agent.logs import LOGGER_NAME, configure_logging
from localagent.config.model import LogsSection


@pytest.fixture
def restore_logger() -> Iterator[None]:
    logger = logging.getLogger(LOGGER_NAME)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


@pytest.mark.usefixtures("restore_logger")
def test_json_then_text_with_the_level_applied() -> None:
    stream = io.StringIO()
    configure_logging(LogsSection(format="json", level="WARNING"), stream=stream)
    log = logging.getLogger("localagent.agent.test")
    log.info("hidden")
    log.warning("run %s failed", "r1", extra={"run_id": "r1"})
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "localagent.agent.test"
    assert entry["message"] == "run r1 failed"
    assert entry["run_id"] == "r1"
    assert entry["time"].endswith("+00:00")

    configure_logging(LogsSection(format="text", level="DEBUG"), stream=stream)
    log.debug("now visible")
    last = stream.getvalue().splitlines()[-1]
    assert last.endswith("DEBUG   localagent.agent.test: now visible")
    assert len(logging.getLogger(LOGGER_NAME).handlers) == 1, "reconfiguring replaces, never stacks handlers"
