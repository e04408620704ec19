"""Checks applied to every request before its handler runs (one hook for every route, so a new
route is covered without doing anything):

- **Bearer token** (when the server has one): ``Authorization: Bearer <token>``, else HTTP 401.
  ``GET /openapi.json`` stays readable without it.
- **No cross-site control**: a request that may change state (anything but GET, HEAD, OPTIONS)
  is refused with HTTP 403 when a browser marks it as coming from another site (an ``Origin``
  other than the server's own or an allowed one, or ``Sec-Fetch-Site: cross-site``), and with
  HTTP 415 when it carries a body that is not ``application/json``. A page can send neither a
  JSON body nor an ``Authorization`` header to another site without that site's consent (CORS,
  which this server never grants).
- **No DNS rebinding**: without a token, the ``Host`` a request names must be an IP address,
  ``localhost``, this machine's name or the host of an allowed origin (else HTTP 403): a page
  whose own name was made to point at this server cannot pass for it.
- **Bounded bodies**: at most ``MAX_BODY_BYTES`` (HTTP 413) and ``MAX_JSON_DEPTH`` levels of
  nesting (HTTP 400).

Every refusal is a JSON ``{"status": "error", "message": ...}`` answer and changes nothing.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Flask, jsonify, request

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = frozenset({"/openapi.json", "/"})
"""Readable without the token: the API description and the web page (it holds no data; its script
sends the token with every data request)."""
PUBLIC_PREFIXES = ("/ui/",)
MAX_BODY_BYTES = 1 << 20
MAX_JSON_DEPTH = 16


@dataclass(frozen=True)
class AccessPolicy:
    """Who may use the API: the bearer token (None: no token needed) and extra allowed origins."""

    token: str | None = None
    allowed_origins: tuple[str, ...] = ()


def _refuse(code: int, message: str):
    response = jsonify({"status": "error", "message": message})
    response.status_code = code
    if code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="std-daq"'
    return response


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _trusted_host_names(policy: AccessPolicy) -> frozenset[str]:
    names = {"localhost", socket.gethostname().lower(), socket.getfqdn().lower()}
    names.update((urlsplit(origin).hostname or "").lower() for origin in policy.allowed_origins)
    return frozenset(names - {""})


def _host_is_trusted(trusted: frozenset[str]) -> bool:
    try:
        host = (urlsplit("//" + request.host).hostname or "").lower()
    except ValueError:  # not even a host name
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return host in trusted


def _authorized(token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _cross_site(policy: AccessPolicy) -> str | None:
    """Why the request looks like it comes from another site's page, or None."""
    origin = request.headers.get("Origin")
    if origin is not None:
        allowed = {_origin_of(request.host_url), *(_origin_of(o) for o in policy.allowed_origins)}
        if origin.lower() not in allowed:
            return f"requests from the page at Origin {origin[:100]!r} are not accepted"
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return "requests from another site's page are not accepted"
    return None


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in a JSON text (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _body_problem() -> tuple[int, str] | None:
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        return 413, f"The request body is larger than {MAX_BODY_BYTES} bytes"
    body = request.get_data(cache=True)
    if not body and not request.content_type:
        return None
    if request.mimetype != "application/json":
        shown = (request.content_type or "none")[:60]
        return 415, f"The request body must be application/json (Content-Type {shown!r} is not accepted)"
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return 400, "The request body is not UTF-8 JSON."
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and json_depth(text) > MAX_JSON_DEPTH:
        return 400, f"The request body is nested deeper than {MAX_JSON_DEPTH} levels"
    if text.strip():
        try:
            json.loads(text)
        except (ValueError, RecursionError):
            return 400, "The request body is not valid JSON."
    return None


def _is_public(path: str) -> bool:
    return (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)) and request.method in ("GET", "HEAD")


def install_guards(app: Flask, policy: AccessPolicy) -> None:
    """Apply the checks of this module to every request of ``app``."""
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    trusted = _trusted_host_names(policy)

    @app.before_request
    def guard():
        if policy.token is not None and not _is_public(request.path) and not _authorized(policy.token):
            return _refuse(401, "Authentication required: send the header 'Authorization: Bearer <token>'")
        if policy.token is None and not _host_is_trusted(trusted):
            return _refuse(
                403,
                f"Host {request.host[:100]!r} is not accepted: use an IP address or this machine's name "
                "(or allow it with --allowed-origin)",
            )
        if request.method in SAFE_METHODS:
            return None
        why = _cross_site(policy)
        if why:
            return _refuse(403, f"Cross-site request refused: {why} (see docs/security.rst)")
        problem = _body_problem()
        if problem:
            return _refuse(*problem)
        return None
