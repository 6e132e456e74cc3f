"""A plain ``requests`` client of the Prefect 3 server's REST API: only the calls a process worker makes.

Usage::

    rest = PrefectRest("http://127.0.0.1:4200/api", key=None, timeout=10.0)
    pool = rest.read_work_pool("local")                       # ApiNotFound when it does not exist
    due = rest.get_scheduled_flow_runs("local", ["default"], scheduled_before=now)
    result = rest.set_state(run_id, pending_state(run_id))    # {"status": "ACCEPT", "state": {...}, ...}

The agent never imports the ``prefect`` library (its import alone costs more memory and start-up time than
the whole agent); the bodies below are the ones Prefect 3.9.1's own worker sends (see the worker protocol
notes in ``docs/prefect3.md``). Every foreign exception becomes one of :mod:`localagent.errors` here, in
:meth:`PrefectRest._call`; nothing is retried here: callers retry with their own back-off.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import requests
from urllib3.util.retry import Retry

from localagent import __version__
from localagent.api.http_errors import connection_reason as _connection_reason
from localagent.api.http_errors import rejection as _rejection
from localagent.api.http_errors import response_detail as _detail
from localagent.errors import ApiRejected, ApiUnavailable

FINAL_TYPES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
JSONDict = dict[str, Any]


def prefect_api_url(url: str) -> str:
    """The API base a config's ``api.url`` names: ``http://host:4200`` means ``http://host:4200/api``."""
    url = url.rstrip("/")
    _scheme, _, rest = url.partition("://")
    if "/" not in rest:
        return url + "/api"
    return url


def authorization(key: str, auth: str) -> str:
    """The ``Authorization`` header Prefect expects: a bearer API key, or HTTP basic with ``user:password``."""
    if auth == "basic":
        return "Basic " + base64.b64encode(key.encode()).decode()
    return f"Bearer {key}"


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def state_body(run_id: str, state_type: str, name: str, message: str | None = None) -> JSONDict:
    """A state as Prefect's client sends it (``transition_id`` lets the server recognise a resend)."""
    return {
        "type": state_type,
        "name": name,
        "message": message,
        "state_details": {"flow_run_id": run_id, "transition_id": str(uuid.uuid4())},
        "data": None,
    }


class PrefectRest:
    """The REST calls of a Prefect 3 process worker, on one keep-alive connection pool (thread-safe)."""

    def __init__(self, url: str, *, key: str | None = None, timeout: float = 10.0, auth: str = "bearer") -> None:
        if not url.startswith(("http://", "https://")):
            raise ApiUnavailable(f"Prefect API url must start with http:// or https://, got {url!r}")
        self.url = prefect_api_url(url)
        self.key = key
        self.auth = auth  # "bearer": key is an API key; "basic": key is the server's user:password auth string
        self._timeout = timeout
        self._session = requests.Session()
        self._session.headers["User-Agent"] = f"localagent/{__version__} (prefect worker)"
        self._session.headers["Accept"] = "application/json"
        if key:
            self._session.headers["Authorization"] = authorization(key, auth)
        # A kept-alive connection the server has just closed fails the next request on it; urllib3 retries
        # connects for every call and reads for idempotent ones (never a POST it may have delivered).
        retry = Retry(total=2, connect=2, read=1, status=0, other=0, backoff_factor=0.1, raise_on_status=False)
        adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=32, max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def close(self) -> None:
        self._session.close()

    # -- work pools and queues ---------------------------------------------------------------------

    def read_work_pool(self, pool: str) -> JSONDict:
        return self._dict("GET", f"/work_pools/{_seg(pool)}")

    def create_work_pool(self, pool: str, base_job_template: JSONDict) -> JSONDict:
        body = {"name": pool, "type": "process", "base_job_template": base_job_template}
        return self._dict("POST", "/work_pools/", body)

    def read_work_queues(self, pool: str) -> list[JSONDict]:
        return self._list("POST", f"/work_pools/{_seg(pool)}/queues/filter", {})

    def create_work_queue(self, pool: str, queue: str) -> JSONDict:
        return self._dict("POST", f"/work_pools/{_seg(pool)}/queues", {"name": queue})

    def worker_heartbeat(self, pool: str, worker: str, interval: float) -> None:
        body = {"name": worker, "heartbeat_interval_seconds": max(1, round(interval))}
        self._call("POST", f"/work_pools/{_seg(pool)}/workers/heartbeat", body)

    def get_scheduled_flow_runs(
        self, pool: str, queues: Sequence[str], *, scheduled_before: datetime, limit: int | None = None
    ) -> list[JSONDict]:
        """``[{"work_pool_id", "work_queue_id", "flow_run": {...}}]``, soonest first, within the pool's limits."""
        body: JSONDict = {"work_queue_names": list(queues), "scheduled_before": iso(scheduled_before)}
        if limit is not None:
            body["limit"] = limit
        return self._list("POST", f"/work_pools/{_seg(pool)}/get_scheduled_flow_runs", body)

    # -- flow runs ----------------------------------------------------------------------------------

    def read_flow_run(self, run_id: str) -> JSONDict:
        return self._dict("GET", f"/flow_runs/{_seg(run_id)}")

    def read_deployment(self, deployment_id: str) -> JSONDict:
        return self._dict("GET", f"/deployments/{_seg(deployment_id)}")

    def read_flow(self, flow_id: str) -> JSONDict:
        return self._dict("GET", f"/flows/{_seg(flow_id)}")

    def set_state(self, run_id: str, state: JSONDict, *, force: bool = False) -> JSONDict:
        """Propose ``state``: ``{"status": "ACCEPT"|"REJECT"|"ABORT"|"WAIT", "details": {...}, "state": {...}}``."""
        return self._dict("POST", f"/flow_runs/{_seg(run_id)}/set_state", {"state": state, "force": force})

    def update_flow_run(self, run_id: str, fields: JSONDict) -> None:
        self._call("PATCH", f"/flow_runs/{_seg(run_id)}", fields)

    def update_labels(self, run_id: str, labels: dict[str, str]) -> None:
        self._call("PATCH", f"/flow_runs/{_seg(run_id)}/labels", labels)

    def flow_runs_in_states(self, run_ids: Sequence[str], state_types: Sequence[str]) -> list[JSONDict]:
        """The runs among ``run_ids`` whose state type is one of ``state_types``."""
        body = {
            "flow_runs": {"id": {"any_": list(run_ids)}, "state": {"type": {"any_": list(state_types)}}},
            "limit": max(1, len(run_ids)),
        }
        return self._list("POST", "/flow_runs/filter", body)

    def existing_flow_runs(self, run_ids: Sequence[str]) -> list[JSONDict]:
        body = {"flow_runs": {"id": {"any_": list(run_ids)}}, "limit": max(1, len(run_ids))}
        return self._list("POST", "/flow_runs/filter", body)

    def active_flow_runs(self, pool: str, limit: int = 200) -> list[JSONDict]:
        """Runs of ``pool`` that are ``PENDING`` or ``RUNNING``."""
        body = {
            "flow_runs": {"state": {"type": {"any_": ["PENDING", "RUNNING"]}}},
            "work_pools": {"name": {"any_": [pool]}},
            "limit": limit,
        }
        return self._list("POST", "/flow_runs/filter", body)

    def create_logs(self, logs: list[JSONDict]) -> None:
        self._call("POST", "/logs/", logs)

    # -- transport: the one place foreign exceptions become ApiErrors --------------------------------

    def _dict(self, method: str, path: str, body: Any = None) -> JSONDict:
        data = self._call(method, path, body)
        if not isinstance(data, dict):
            raise ApiRejected(
                200, f"the Prefect API answered {method} {path} with {type(data).__name__}, not an object"
            )
        return data

    def _list(self, method: str, path: str, body: Any = None) -> list[JSONDict]:
        data = self._call(method, path, body)
        if not isinstance(data, list):
            raise ApiRejected(200, f"the Prefect API answered {method} {path} with {type(data).__name__}, not a list")
        return data

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        what = f"{method} {path}"
        try:
            response = self._session.request(method, self.url + path, json=body, timeout=self._timeout)
        except requests.RequestException as exc:
            raise ApiUnavailable(
                f"cannot reach the Prefect API at {self.url} ({what}): {_connection_reason(exc)}; "
                "is `prefect server start` running and api.url right?"
            ) from exc
        status = response.status_code
        if status >= 500:
            raise ApiUnavailable(f"the Prefect API at {self.url} answered {what} with HTTP {status}")
        if status in (401, 403):
            raise _rejection(
                status,
                f"the Prefect API at {self.url} refused the agent's credentials ({what}: HTTP "
                f"{status} {_detail(response) or ''}); check api.key / api.key_file and prefect.auth",
            )
        if status >= 400:
            raise _rejection(status, f"Prefect API {what}: {_detail(response) or f'HTTP {status}'}")
        if status == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ApiRejected(status, f"the Prefect API answered {what} with a body that is not JSON") from exc


def _seg(value: str) -> str:
    return quote(value, safe="")
