"""The security options of ``std_daq_server`` (see docs/security.rst): bearer token, who may
connect from where, which user ids files may be created as, and the memory a config may take."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import stat
from pathlib import Path

from daq_server.api.guards import AccessPolicy
from daq_server.api.live import MAX_LIVE_STREAMS
from daq_server.limits import parse_user_id_ranges
from daq_server.service import DEFAULT_MEMORY_LIMIT

REQUEST_THREADS = MAX_LIVE_STREAMS + 6
"""Live streams hold a thread each; the rest always answer status, stop and the other calls."""
_log = logging.getLogger("daq_server.cli")


def _user_id_ranges(text: str) -> tuple[tuple[int, int], ...]:
    try:
        return parse_user_id_ranges(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_security_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token-file",
        type=Path,
        help="require 'Authorization: Bearer <token>' on every request; the token is the file's first line",
    )
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="serve a non-loopback --host without a token (only behind a firewall or an authenticating proxy)",
    )
    parser.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="URL",
        help="also accept state changes from pages of this origin, e.g. https://daq.example.org (repeatable)",
    )
    parser.add_argument(
        "--allowed-user-ids",
        type=_user_id_ranges,
        metavar="RANGES",
        help="writer_user_id a config may set, e.g. 1000-65535 or 0,1000-65535 (default: any of 0 … 2^31-1)",
    )
    parser.add_argument(
        "--memory-limit-mb",
        type=int,
        default=DEFAULT_MEMORY_LIMIT >> 20,
        help=f"refuse a config whose receiver needs more memory (default {DEFAULT_MEMORY_LIMIT >> 20} MiB)",
    )


def is_loopback(host: str) -> bool:
    """Is the REST API address reachable from this machine only?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


def read_token(path: Path) -> str:
    """The token: the file's first line; ValueError if unreadable or empty."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the token file {path}: {error}") from None
    token = text.splitlines()[0].strip() if text.strip() else ""
    if len(token) < 16:
        raise ValueError(f"the token in {path} must be at least 16 characters on its first line")
    if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
        _log.warning("the token file %s is readable by other users; chmod 600 it", path)
    return token


def access_policy(args: argparse.Namespace) -> AccessPolicy:
    """The policy of the command line; ValueError for an unsafe or broken combination."""
    token = read_token(args.token_file) if args.token_file else None
    if token is None and not is_loopback(args.host) and not args.no_auth:
        raise ValueError(
            f"--host {args.host} is reachable from other machines: give --token-file FILE "
            "(or --no-auth if a firewall or an authenticating reverse proxy guards the port)"
        )
    return AccessPolicy(token=token, allowed_origins=tuple(args.allowed_origin))
