"""Who may see the web view, and which requests may change something.

* **Login.** With API keys, every page needs one: the login form stores it in an HttpOnly, SameSite=Strict
  cookie (``auth.SESSION_COOKIE``), never in a URL; scripts cannot read it and other sites cannot send it.
* **Cross-site requests.** Actions are POSTs that must carry an ``Origin`` (or, failing that, ``Referer``) of
  this very server. SameSite=Strict already keeps the cookie off cross-site requests, but a server without
  keys has no cookie to withhold: the origin check is what stops another site's form from cancelling runs on
  a loopback server. A token per session would add nothing here: every browser that honours SameSite sends
  ``Origin`` on a POST, and a page that could forge ``Origin`` could read a token too.
* **DNS rebinding.** A server without keys answers only to loopback host names, so a page on a rebound name
  (``evil.example`` resolving to 127.0.0.1) gets nothing, and its same-origin POSTs are refused.
* **Headers.** Every page carries a strict Content-Security-Policy (scripts and styles from this server's
  ``/static`` only, no inline code), and is never framed, cached or sniffed.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from fastapi import Depends, Request
from starlette.responses import Response

from localagent.server.auth import SESSION_COOKIE, is_api_key
from localagent.server.services import Services, services

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """A page was asked for without a valid key: the app answers with the login form (see ``pages``)."""


class Forbidden(Exception):
    """A request the view refuses outright (foreign origin, rebound host name): answered 403 with the reason."""


def secure(response: Response) -> Response:
    response.headers.update(PAGE_HEADERS)
    return response


def is_loopback_host(host_header: str) -> bool:
    """``127.0.0.1:4300``, ``localhost``, ``[::1]:80`` -> True; any other name -> False."""
    host = urlsplit(f"//{host_header}").hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def has_session(request: Request, svc: Services) -> bool:
    keys = svc.settings.api_keys
    if not keys:
        return True
    cookie = request.cookies.get(SESSION_COOKIE, "")
    return bool(cookie) and is_api_key(keys, cookie)


def check_host(request: Request, svc: Services) -> None:
    if not svc.settings.api_keys and not is_loopback_host(request.headers.get("host", "")):
        raise Forbidden("this server has no API key, so its web view answers only on a loopback address")


async def require_viewer(request: Request, svc: Services = Depends(services)) -> Services:
    """Pages: the caller holds a valid key (or the server has none); otherwise the login form."""
    check_host(request, svc)
    if not has_session(request, svc):
        raise LoginRequired()
    return svc


async def require_same_origin(request: Request, svc: Services = Depends(services)) -> Services:
    """Actions (POST): sent by a page of this server, by a caller allowed to see it."""
    check_host(request, svc)
    origin = request.headers.get("origin") or request.headers.get("referer", "")
    # Host and port only: behind a TLS-terminating proxy the page is https while this server sees http.
    sender = urlsplit(origin).netloc if origin != "null" else ""
    if not sender or sender.lower() != request.headers.get("host", "").lower():
        raise Forbidden("refused: the request did not come from a page of this server (Origin check)")
    return svc


def safe_next(target: str | None) -> str:
    """Where to go after login: a path on this server only (``//evil.example`` and ``https://...`` are not)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
