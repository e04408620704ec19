"""std_daq_coordinator: one DAQ over several receiver hosts (each ``std_daq_server --modules …``).

Serves the ordinary REST API (writer, config, stats, logs, deployment): a write request fans out to
every host, each writes its part file, and the coordinator writes output_file as a master file whose
virtual dataset shows the whole image.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from daq_server.config import ConfigError
from daq_server.coordinator.service import Coordinator, CoordinatorOptions
from daq_server.serve.api import create_app
from daq_server.serve.cli_security import access_policy, add_security_arguments
from daq_server.serve.serving import serve
from daq_server.serve.tokens import existing_machine_token, read_token

_log = logging.getLogger("daq_server.coordinator")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="std_daq_coordinator", description=__doc__)
    parser.add_argument("--config", required=True, type=Path, help="the full detector config JSON")
    parser.add_argument(
        "--hosts", required=True, help="the receiver hosts' REST URLs, comma-separated (part i: the i-th host)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="REST API address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="REST API port (default 5000)")
    parser.add_argument("--data-root", type=Path, required=True, help="output files must lie inside")
    parser.add_argument("--state-dir", type=Path, help="acquisition log (default: <config>.coordinator next to it)")
    parser.add_argument("--redis-url", help="follow the hosts' status on Redis and publish the joined status there")
    parser.add_argument(
        "--hosts-token-file",
        type=Path,
        help="the bearer token the receiver hosts require (first line of FILE; default: this machine's token)",
    )
    parser.add_argument("--log-level", default="INFO")
    add_security_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    options = CoordinatorOptions(
        config_file=args.config,
        data_root=args.data_root,
        state_dir=args.state_dir or args.config.with_name(args.config.name + ".coordinator"),
        hosts=tuple(url.strip() for url in args.hosts.split(",") if url.strip()),
        redis_url=args.redis_url,
    )
    try:
        policy = access_policy(args)
        hosts_token = read_token(args.hosts_token_file) if args.hosts_token_file else existing_machine_token()
    except ValueError as error:
        sys.exit(f"std_daq_coordinator: {error}")
    try:
        coordinator = Coordinator(options, hosts_token)
    except (ConfigError, ValueError, OSError) as error:
        sys.exit(f"std_daq_coordinator: {error}")
    _log.info("coordinating %s", ", ".join(options.hosts))
    # the resources that make sense for the whole detector, behind the same guards as a server
    app = create_app(coordinator, policy, host_resources=False, name="daq_server.coordinator")
    serve(app, args.host, args.port, 8, "std_daq_coordinator", coordinator.close)


if __name__ == "__main__":
    main()
