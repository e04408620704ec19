"""``std_daq_server``: run the DAQ (receiver + writer + REST API) for one detector config."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from waitress import create_server

from daq_server.api import create_app
from daq_server.compression import MAX_THREADS
from daq_server.config import ConfigError
from daq_server.receiver import ReceiverSettings
from daq_server.service import DaqService, ServerOptions
from daq_server.writer import COMPRESSIONS, has_quarantined_files


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="std_daq_server", description=__doc__)
    parser.add_argument("--config", required=True, type=Path, help="detector config JSON (rewritten by set_config)")
    parser.add_argument("--host", default="127.0.0.1", help="REST API address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="REST API port (default 5000)")
    parser.add_argument("--data-root", type=Path, default=Path("/"), help="output files must lie inside (default /)")
    parser.add_argument(
        "--state-dir", type=Path, help="acquisition log and crash marker (default: <config>.state next to the config)"
    )
    parser.add_argument("--udp-address", default="0.0.0.0", help="address the receiver binds (default 0.0.0.0)")
    parser.add_argument("--ring-mb", type=int, default=256, help="ring buffer size in MiB (default 256)")
    parser.add_argument(
        "--pin-receivers", action="store_true", help="pin each module's receive thread to its own CPU (many cores)"
    )
    parser.add_argument("--compression", choices=COMPRESSIONS, default="none", help="HDF5 image compression")
    parser.add_argument(
        "--compression-threads",
        type=int,
        default=0,
        metavar="N",
        help=f"native threads compressing images, 1 to {MAX_THREADS} (default: one per CPU but one)",
    )
    parser.add_argument("--redis-url", help="publish status, stats, log and config on Redis PUB/SUB (optional)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.compression_threads and not 1 <= args.compression_threads <= MAX_THREADS:
        parser.error(f"--compression-threads must be 1 to {MAX_THREADS}, not {args.compression_threads}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    options = ServerOptions(
        config_file=args.config,
        data_root=args.data_root,
        state_dir=args.state_dir or args.config.with_name(args.config.name + ".state"),
        receiver=ReceiverSettings(
            bind_address=args.udp_address, ring_bytes=args.ring_mb << 20, pin_threads=args.pin_receivers
        ),
        compression=args.compression,
        compression_threads=args.compression_threads,
        redis_url=args.redis_url,
    )
    try:
        service = DaqService(options)
    except (ConfigError, RuntimeError, OSError) as error:
        sys.exit(f"std_daq_server: {error}")
    try:
        server = create_server(create_app(service), host=args.host, port=args.port, threads=8)
    except OSError as error:
        service.close()
        sys.exit(f"std_daq_server: cannot serve on {args.host}:{args.port}: {error}")

    def shutdown(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shutdown)
    logging.getLogger("daq_server").info("serving on http://%s:%d", args.host, args.port)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        service.close()
        if has_quarantined_files():
            # HDF5 cannot release a file whose writes failed without crashing: leave without the
            # interpreter's clean-up (everything of ours is closed and on disk by now)
            logging.shutdown()
            os._exit(0)


if __name__ == "__main__":
    main()
