"""Following the Prefect server's event stream: runs that became scheduled or cancelling, as they happen.

Usage::

    stream = EventStream(rest, on_scheduled=wake_claims, on_cancelling=cancels.add)
    stream.start()          # a daemon thread; reconnects with back-off
    stream.connected        # False while the stream is down: claims fall back to polling
    stream.stop()

The stream is ``/api/events/out`` (a websocket): an ``auth`` frame, then a ``filter`` frame for flow-run
state events; the server then pushes each matching event. It only makes pickup and cancels faster: claims
and heartbeats still ask the REST API, so an event that is lost (the stream reconnecting, a server restart)
delays a run by at most ``prefect.query_interval``. The websocket client is the optional dependency
``websocket-client`` (``pip install 'localagent[prefect]'``); without it the agent polls.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from localagent.prefect.rest import authorization

if TYPE_CHECKING:
    from localagent.prefect.rest import PrefectRest

logger = logging.getLogger("localagent.prefect")

_MAX_BACKOFF = 10.0  # a restarted server is followed again within this; polling covers the gap
SCHEDULED_TYPES = frozenset({"SCHEDULED"})
# Only the state events that can make a run claimable or cancel one (not every flow-run event of the server).
EVENT_NAMES = (
    "prefect.flow-run.Scheduled",
    "prefect.flow-run.AwaitingRetry",
    "prefect.flow-run.AwaitingConcurrencySlot",
    "prefect.flow-run.Cancelling",
)


def websocket_available() -> bool:
    try:
        import websocket  # noqa: F401
    except ImportError:
        return False
    return True


class EventStream:
    """One websocket to ``/api/events/out`` on a thread of its own; calls back on run state events."""

    def __init__(
        self,
        rest: PrefectRest,
        *,
        on_scheduled: Callable[[str, str | None], None],
        on_cancelling: Callable[[str], None],
    ) -> None:
        self._rest = rest
        self._on_scheduled = on_scheduled
        self._on_cancelling = on_cancelling
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._socket: Any = None
        self._lost = False  # the stream failed since it last connected: say so when it is back
        self.connected = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="localagent-prefect-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        sock = self._socket
        if sock is not None:
            # Closing a socket another thread reads: any error means it is closed.
            with contextlib.suppress(Exception):
                sock.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._follow()
                backoff = 0.5
            except Exception as exc:  # any failure of the stream: log once per outage, poll meanwhile
                if not self._stop.is_set() and (self.connected or backoff == 0.5):
                    logger.info("Prefect event stream unavailable (%s); polling every prefect.query_interval", exc)
                    self._lost = True
            self.connected = False
            self._stop.wait(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def _follow(self) -> None:
        import websocket

        url = "ws" + self._rest.url[len("http") :] + "/events/out"
        headers = [f"Authorization: {authorization(self._rest.key, self._rest.auth)}"] if self._rest.key else []
        sock = websocket.create_connection(url, timeout=10, header=headers, subprotocols=["prefect"])
        self._socket = sock
        try:
            sock.send(json.dumps({"type": "auth", "token": self._rest.key}))
            reply = json.loads(sock.recv())
            if reply.get("type") != "auth_success":
                raise ConnectionError(f"the event stream refused the key: {reply.get('reason') or reply}")
            now = datetime.now(timezone.utc)
            flow_filter = {
                "occurred": {"since": now.isoformat(), "until": (now + timedelta(days=36500)).isoformat()},
                "event": {"name": list(EVENT_NAMES)},
            }
            sock.send(json.dumps({"type": "filter", "filter": flow_filter}))
            sock.settimeout(None)
            self.connected = True
            if self._lost:
                logger.info("Prefect event stream connected again at %s", url)
                self._lost = False
            else:
                logger.debug("following the Prefect event stream at %s", url)
            self._on_scheduled("", None)  # runs scheduled while it was down: one claim looks for them
            while not self._stop.is_set():
                message = sock.recv()
                if not message:
                    raise ConnectionError("the event stream closed")
                self._dispatch(json.loads(message))
        finally:
            self._socket = None
            sock.close()

    def _dispatch(self, message: dict[str, Any]) -> None:
        event = message.get("event") if message.get("type") == "event" else None
        if not isinstance(event, dict):
            return
        resource_id = str((event.get("resource") or {}).get("prefect.resource.id", ""))
        if not resource_id.startswith("prefect.flow-run."):
            return
        run_id = resource_id[len("prefect.flow-run.") :]
        state = ((event.get("payload") or {}).get("validated_state") or {}).get("type")
        name = str(event.get("event", ""))
        if state in SCHEDULED_TYPES:
            pool = None
            for related in event.get("related") or []:
                related_id = str(related.get("prefect.resource.id", ""))
                if related_id.startswith("prefect.work-pool."):
                    pool = related_id[len("prefect.work-pool.") :]
            self._on_scheduled(run_id, pool)
        elif state == "CANCELLING" or name == "prefect.flow-run.Cancelling":
            self._on_cancelling(run_id)
