"""The work pool the agent serves: checked (or created) at registration, and again after a reload or a 404.

Usage::

    pool = ensure_pool(rest, settings)    # the pool's record; ApiNotFound / ApiRejected with a clear message

A pool that does not exist is created (type ``process``, the template ``prefect work-pool create --type
process`` stores) only with ``prefect.create_pool_if_missing``; otherwise the error says so and the agent
keeps retrying with back-off, so a pool created later (or a pool deleted and created again) is served again
without a restart. Named queues that do not exist are created, as Prefect's own worker does.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from localagent.errors import ApiConflict, ApiNotFound, ApiRejected
from localagent.prefect.jobs import PROCESS_BASE_JOB_TEMPLATE

if TYPE_CHECKING:
    from localagent.config.model import PrefectSection
    from localagent.prefect.rest import PrefectRest

logger = logging.getLogger("localagent.prefect")

JSONDict = dict[str, Any]


def ensure_pool(rest: PrefectRest, settings: PrefectSection) -> JSONDict:
    """The pool named by ``settings`` (created when allowed), after checking it is a process pool."""
    name = settings.work_pool
    try:
        pool = rest.read_work_pool(name)
    except ApiNotFound:
        if not settings.create_pool_if_missing:
            raise ApiNotFound(
                404,
                f"work pool {name!r} does not exist on the Prefect server at {rest.url} "
                "(prefect.create_pool_if_missing is false): waiting for it to be created",
            ) from None
        logger.info("creating Prefect work pool %r (type process) at %s", name, rest.url)
        try:
            pool = rest.create_work_pool(name, PROCESS_BASE_JOB_TEMPLATE)
        except ApiConflict:  # another worker created it meanwhile
            pool = rest.read_work_pool(name)
    if pool.get("type") != "process":
        raise ApiRejected(
            409, f"work pool {name!r} is of type {pool.get('type')!r}; localagent serves process pools only"
        )
    if settings.work_queues:
        known = {str(queue.get("name")) for queue in rest.read_work_queues(name)}
        for queue in settings.work_queues:
            if queue not in known:
                logger.info("creating work queue %r in pool %r", queue, name)
                with contextlib.suppress(ApiConflict):  # another worker created it meanwhile
                    rest.create_work_queue(name, queue)
    return pool


def pool_gone(rest: PrefectRest, name: str) -> ApiNotFound:
    """The error of a claim or heartbeat that found the pool deleted (the agent then registers again)."""
    return ApiNotFound(404, f"work pool {name!r} no longer exists on the Prefect server at {rest.url}")
