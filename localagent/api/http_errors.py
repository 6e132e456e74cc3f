"""Readable errors from HTTP answers and failures: the text of ``ApiError``s of the HTTP clients.

Usage::

    raise rejection(response.status_code, response_detail(response))   # 404 -> ApiNotFound, 401 -> ...
    connection_reason(exc)   # "connection refused", "connect timed out", ... found in an exception's chain

Shared by :mod:`localagent.api.client` and the Prefect REST client.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Sequence

import requests

from localagent.errors import ApiConflict, ApiNotFound, ApiRejected, ApiUnauthorized, ApiUnavailable

_MAX_DETAIL = 500


def unreachable(
    failures: Sequence[tuple[str, BaseException | None, str]], what: str, wait: float, attempts: int
) -> ApiUnavailable:
    """The error of a request that no URL answered (``failures``: url, exception, reason)."""
    if len(failures) == 1:
        url, exc, reason = failures[0]
        if isinstance(exc, requests.Timeout):
            error = ApiUnavailable(
                f"the API at {url} did not answer {what} within {wait:g}s{tries(attempts)}: {reason}"
            )
        else:
            error = ApiUnavailable(
                f"cannot reach the API at {url}: {reason}{tries(attempts)}; "
                "is `localagent run` or `localagent server` running?"
            )
    else:
        reasons = "; ".join(f"{url}: {reason}" for url, _, reason in failures)
        error = ApiUnavailable(
            f"no API URL answered {what}{tries(attempts)} ({reasons}); is `localagent server` running?"
        )
    error.__cause__ = failures[-1][1]
    return error


def tries(attempts: int) -> str:
    return f" (tried {attempts} times)" if attempts > 1 else ""


def rejection(status: int, detail: str) -> ApiRejected:
    if status == 404:
        return ApiNotFound(status, detail)
    if status in (401, 403):
        return ApiUnauthorized(status, detail)
    if status == 409:
        return ApiConflict(status, detail)
    return ApiRejected(status, detail)


def response_detail(response: requests.Response) -> str:
    """The server's ``detail`` text; FastAPI's list form and non-JSON bodies are made readable too."""
    try:
        data = response.json()
    except (ValueError, requests.RequestException):
        return snippet(response)
    detail = data.get("detail") if isinstance(data, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return snippet(response)


def snippet(response: requests.Response) -> str:
    try:
        text = response.text.strip()
    except requests.RequestException:
        return ""
    if not text:
        return ""
    if len(text) > _MAX_DETAIL:
        text = text[:_MAX_DETAIL] + "..."
    return json.dumps(text) if "\n" in text else text


def connection_reason(exc: BaseException) -> str:
    """A short human reason found anywhere in a requests/urllib3 exception's chain."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, socket.gaierror):
            return "host name not resolved"
        if isinstance(current, ConnectionResetError):
            return "connection reset by the server"
        if isinstance(current, ssl.SSLError):
            return f"TLS error: {current}"
        if isinstance(current, (requests.ReadTimeout, requests.ConnectTimeout)):
            kind = "reading the answer timed out" if isinstance(current, requests.ReadTimeout) else "connect timed out"
            return kind
        linked: list[object] = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked.extend(current.args[:1])
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return str(exc) or type(exc).__name__
