"""std_daq_server: run the DAQ (receiver + writer + REST API) for one detector config."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from daq_server.config import ConfigError, ConfigStore
from daq_server.pipeline.compression import MAX_THREADS
from daq_server.receive.udp_receiver import ReceiverSettings
from daq_server.serve.api import create_app
from daq_server.serve.cli_security import REQUEST_THREADS, access_policy, add_security_arguments
from daq_server.serve.host_part import prepare_host_config
from daq_server.serve.service import DaqService, ServerOptions
from daq_server.serve.serving import serve
from daq_server.write.hdf5_writer import COMPRESSIONS, has_quarantined_files


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="std_daq_server", description=__doc__)
    parser.add_argument("--config", required=True, type=Path, help="detector config JSON (rewritten by set_config)")
    parser.add_argument("--host", default="127.0.0.1", help="REST API address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="REST API port (default 5000)")
    parser.add_argument(
        "--data-root",
        type=Path,
        help="required: output files are created only inside this folder (no symbolic link below it is followed)",
    )
    parser.add_argument(
        "--state-dir", type=Path, help="acquisition log and crash marker (default: <config>.state next to the config)"
    )
    parser.add_argument("--udp-address", default="0.0.0.0", help="address the receiver binds (default 0.0.0.0)")
    parser.add_argument(
        "--ring-mb",
        type=int,
        default=1024,
        help="memory granted to the ring buffer of images, MiB (default 1024): its seconds of data are "
        "this divided by the detector's data rate",
    )
    parser.add_argument(
        "--socket-buffer-mb",
        type=int,
        default=256,
        help="kernel receive buffer of each module's UDP socket, MiB (default 256; beyond net.core.rmem_max as root)",
    )
    parser.add_argument(
        "--realtime-priority",
        type=int,
        default=20,
        help="SCHED_FIFO priority of the receive threads when allowed (root or CAP_SYS_NICE; default 20, 0: off)",
    )
    parser.add_argument(
        "--pin-receivers", action="store_true", help="pin each module's receive thread to its own CPU (many cores)"
    )
    parser.add_argument("--compression", choices=COMPRESSIONS, default="none", help="HDF5 image compression")
    parser.add_argument(
        "--compression-threads",
        type=int,
        default=0,
        metavar="N",
        help=f"native threads compressing images, 1 to {MAX_THREADS} (default: one per CPU, but one when the "
        "receive threads are not real-time)",
    )
    parser.add_argument(
        "--writer-processes",
        type=int,
        default=1,
        metavar="N",
        help="processes writing the files from the shared-memory ring buffer, 0 to 16 (default 1; with N > 1 "
        "image k goes to process k mod N and output_file is a master file over their parts; 0: the server itself)",
    )
    parser.add_argument(
        "--writer-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="a writer process that holds images or a close this long without news is killed and the "
        "acquisition FAILED (default 60 s)",
    )
    parser.add_argument(
        "--writer-nice",
        type=int,
        default=-10,
        metavar="N",
        help="nice value of the server (all but its real-time receive threads), its writer processes and their "
        "compressing threads, and of its session's CPU group when it leads its session, if allowed (root or "
        "CAP_SYS_NICE; default -10: ahead of the machine's ordinary work; 0: normal)",
    )
    parser.add_argument("--redis-url", help="publish status, stats, log and config on Redis PUB/SUB (optional)")
    parser.add_argument(
        "--modules",
        help="scale-out receiver host: own only these modules of the config, e.g. 0,1 (see docs/scaleout.rst)",
    )
    parser.add_argument(
        "--stream-address",
        help="publish every image written as DECTRIS Stream2 (CBOR) on a ZeroMQ PUSH socket bound here, "
        "e.g. tcp://0.0.0.0:31001 (docs/streams.rst)",
    )
    parser.add_argument(
        "--preview-address",
        help="publish a rate-limited preview in PSI's array-1.0 form on a ZeroMQ PUB socket bound here",
    )
    parser.add_argument(
        "--preview-rate", type=float, default=2.0,
        help="images a second of the live preview: the page's image and the preview stream (default 2)",
    )  # fmt: skip
    parser.add_argument("--log-level", default="INFO")
    add_security_arguments(parser)
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="only validate the config file (exit 0, or 1 with the reason on one line) and start nothing",
    )
    args = parser.parse_args(argv)
    if args.data_root is None and not args.check_config:
        parser.error("the following arguments are required: --data-root")
    if args.compression_threads and not 1 <= args.compression_threads <= MAX_THREADS:
        parser.error(f"--compression-threads must be 1 to {MAX_THREADS}, not {args.compression_threads}")
    if not 0 <= args.writer_processes <= 16:
        parser.error(f"--writer-processes must be 0 to 16, not {args.writer_processes}")
    if not -20 <= args.writer_nice <= 19:
        parser.error(f"--writer-nice must be -20 to 19, not {args.writer_nice}")
    if not args.writer_timeout > 0:
        parser.error("--writer-timeout must be positive")
    if not 0 < args.preview_rate <= 100:
        parser.error(f"--preview-rate must be above 0 and at most 100, not {args.preview_rate}")
    return args


def stream_options(args: argparse.Namespace) -> dict:
    """The ServerOptions of the image and preview streams (docs/streams.rst)."""
    return {"stream_address": args.stream_address, "preview_address": args.preview_address,
            "preview_rate_hz": args.preview_rate}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.modules:  # scale-out: run on this host's part of the config (kept in its state dir)
        args.state_dir = args.state_dir or args.config.with_name(args.config.name + ".state")
        try:
            args.config = prepare_host_config(args.config, args.modules, args.state_dir)
        except ConfigError as error:
            sys.exit(f"std_daq_server: {args.config}: {error}")
    if args.check_config:
        try:
            ConfigStore(args.config).load()
        except ConfigError as error:
            sys.exit(f"std_daq_server: {args.config}: {error}")
        print(f"{args.config}: valid")
        return
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    options = ServerOptions(
        config_file=args.config,
        data_root=args.data_root,
        state_dir=args.state_dir or args.config.with_name(args.config.name + ".state"),
        receiver=ReceiverSettings(
            bind_address=args.udp_address,
            ring_bytes=args.ring_mb << 20,
            rcvbuf_bytes=args.socket_buffer_mb << 20,
            pin_threads=args.pin_receivers,
            realtime_priority=args.realtime_priority,
        ),
        compression=args.compression,
        compression_threads=args.compression_threads,
        redis_url=args.redis_url,
        memory_limit_bytes=args.memory_limit_mb << 20,
        allowed_user_ids=args.allowed_user_ids,
        writer_processes=args.writer_processes,
        writer_timeout_s=args.writer_timeout,
        writer_nice=args.writer_nice,
        **stream_options(args),
    )
    if args.ring_mb > args.memory_limit_mb:
        sys.exit(f"std_daq_server: --ring-mb {args.ring_mb} exceeds --memory-limit-mb {args.memory_limit_mb}")
    try:
        policy = access_policy(args)
    except ValueError as error:
        sys.exit(f"std_daq_server: {error}")
    try:
        service = DaqService(options)
    except (ConfigError, RuntimeError, OSError, ValueError) as error:
        sys.exit(f"std_daq_server: {error}")
    serve(create_app(service, policy), args.host, args.port, REQUEST_THREADS, "std_daq_server", service.close)
    if has_quarantined_files():
        # HDF5 cannot release a file whose writes failed without crashing: leave without the
        # interpreter's clean-up (everything of ours is closed and on disk by now)
        logging.shutdown()
        os._exit(0)


if __name__ == "__main__":
    main()
