"""The security options of ``std_daq_server`` (see docs/security.rst): bearer token, who may
connect from where, which user ids files may be created as, and the memory a config may take."""

from __future__ import annotations

import argparse
import ipaddress
import logging
from pathlib import Path

from daq_server.serve.api.guards import AccessPolicy
from daq_server.serve.api.live import MAX_LIVE_STREAMS
from daq_server.serve.limits import parse_user_id_ranges
from daq_server.serve.service import DEFAULT_MEMORY_LIMIT
from daq_server.serve.tokens import machine_token, read_token

REQUEST_THREADS = MAX_LIVE_STREAMS + 6
"""Live streams hold a thread each; the rest always answer status, stop and the other calls."""
_log = logging.getLogger("daq_server.serve.cli")


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
        help="serve a non-loopback --host without a token (only behind a firewall or an authenticating proxy); "
        "without it and without --token-file, such a server requires this machine's token (docs/security.rst)",
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


def access_policy(args: argparse.Namespace) -> AccessPolicy:
    """The policy of the command line; ValueError for an unsafe or broken combination."""
    token = read_token(args.token_file) if args.token_file else None
    if token is None and not is_loopback(args.host) and not args.no_auth:
        token, path, created = machine_token()
        _log.warning(
            "--host %s is reachable from other machines: every request needs the token in %s (%s); "
            "clients send it with token= or STD_DAQ_TOKEN. Give --token-file FILE to choose the token, "
            "or --no-auth if a firewall or an authenticating reverse proxy guards the port.",
            args.host,
            path,
            "created now" if created else "this machine's",
        )
    return AccessPolicy(token=token, allowed_origins=tuple(args.allowed_origin))
