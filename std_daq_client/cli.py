"""Command line tools (``std_cli_*``) for the std-daq REST API.

Every tool accepts ``--url_base URL`` (alias ``-b``); without it the environment variable
``STD_DAQ_API_URL`` is used, then ``http://localhost:5000``. On success the returned object is printed
as indented JSON on stdout (exit code 0); on failure one line ``error: <message>`` goes to stderr
(exit code 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from ._client import StdDaqClient
from ._exceptions import StdDaqAdminException

DEFAULT_URL_BASE = "http://localhost:5000"
URL_ENV_VAR = "STD_DAQ_API_URL"


class _CliError(Exception):
    """A problem detected by the CLI itself (e.g. an unreadable config file)."""


def _run(
    description: str,
    call: Callable[[StdDaqClient, argparse.Namespace], Any],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """Parse sys.argv, run ``call(client, args)``, print its result as JSON and exit."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--url_base",
        "-b",
        metavar="URL",
        default=os.environ.get(URL_ENV_VAR) or DEFAULT_URL_BASE,
        help=f"base URL of the std-daq REST API (default: ${URL_ENV_VAR} or {DEFAULT_URL_BASE})",
    )
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()

    try:
        result = call(StdDaqClient(url_base=args.url_base), args)
    except (StdDaqAdminException, RuntimeError, _CliError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result, indent=2))
    sys.exit(0)


def _load_config_file(path: str) -> dict[str, Any]:
    """Read a JSON object from ``path``; raise _CliError if that is not possible."""
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except OSError as exc:
        raise _CliError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _CliError(f"config file {path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise _CliError(f"config file {path} must contain a JSON object")
    return config


def _add_write_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output_file", metavar="OUTPUT_FILE", help="absolute path of the HDF5 file to write")
    parser.add_argument("n_images", metavar="N_IMAGES", type=int, help="number of images to write")
    parser.add_argument(
        "--run_id", type=int, default=None, metavar="INT", help="run id (default: chosen by the server)"
    )


def _write_request(args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {"output_file": args.output_file, "n_images": args.n_images}
    if args.run_id is not None:
        request["run_id"] = args.run_id
    return request


def get_status() -> None:
    """std_cli_get_status"""
    _run("Print the DAQ status (writer state and last acquisition).", lambda c, a: c.get_status())


def get_config() -> None:
    """std_cli_get_config"""
    _run("Print the current DAQ config.", lambda c, a: c.get_config())


def set_config() -> None:
    """std_cli_set_config CONFIG_FILE"""
    _run(
        "Apply the (partial or full) DAQ config from a JSON file and print the config now applied.",
        lambda c, a: c.set_config(_load_config_file(a.config_file)),
        lambda p: p.add_argument("config_file", metavar="CONFIG_FILE", help="JSON file with the config fields to set"),
    )


def get_logs() -> None:
    """std_cli_get_logs [-n N]"""
    _run(
        "Print the last N acquisition log records, newest first.",
        lambda c, a: c.get_logs(a.n_last_logs),
        lambda p: p.add_argument(
            "-n",
            dest="n_last_logs",
            type=int,
            default=10,
            metavar="N",
            help="number of records (default: 10)",
        ),
    )


def get_stats() -> None:
    """std_cli_get_stats"""
    _run("Print the DAQ data flow statistics (detector and writer).", lambda c, a: c.get_stats())


def get_deploy_status() -> None:
    """std_cli_get_deploy_status"""
    _run("Print the deployment status of the last config change.", lambda c, a: c.get_deployment_status())


def write_async() -> None:
    """std_cli_write_async OUTPUT_FILE N_IMAGES [--run_id INT]"""
    _run(
        "Start writing N_IMAGES images to OUTPUT_FILE and print the status without waiting.",
        lambda c, a: c.start_writer_async(_write_request(a)),
        _add_write_arguments,
    )


PROGRESS_INTERVAL_S = 0.2


def _write_with_progress(client: StdDaqClient, request: dict[str, Any]) -> dict[str, Any]:
    """write_sync for a terminal: start, then redraw "written / requested" until the end.

    A hand-written progress line rather than tqdm/rich: this package depends on requests only.
    Ctrl-C stops the acquisition (the file keeps what was written) and prints the status.
    """
    status = client.start_writer_async(request)
    run_id = status["acquisition"]["info"]["run_id"]
    try:
        while status["state"] == "WRITING" and status["acquisition"]["info"]["run_id"] == run_id:
            acquisition = status["acquisition"]
            done, wanted = acquisition["stats"]["n_write_completed"], acquisition["info"]["n_images"]
            bar = "#" * int(30 * done / wanted)
            print(f"\r[{bar:<30}] {done}/{wanted} images written ({acquisition['state']})", end="", file=sys.stderr)
            time.sleep(PROGRESS_INTERVAL_S)
            status = client.get_status()
    except KeyboardInterrupt:
        status = client.stop_writer()
    acquisition = status["acquisition"]
    done, wanted = acquisition["stats"]["n_write_completed"], acquisition["info"]["n_images"]
    print(f"\r{done}/{wanted} images written: {acquisition['state']} {acquisition['message']}", file=sys.stderr)
    return status


def write_sync() -> None:
    """std_cli_write_sync OUTPUT_FILE N_IMAGES [--run_id INT]"""

    def call(client: StdDaqClient, args: argparse.Namespace) -> dict[str, Any]:
        if sys.stdout.isatty() and sys.stderr.isatty():
            return _write_with_progress(client, _write_request(args))
        return client.start_writer_sync(_write_request(args))

    _run(
        "Write N_IMAGES images to OUTPUT_FILE, wait until the acquisition ends and print the status "
        "(with a progress line on a terminal).",
        call,
        _add_write_arguments,
    )


def write_stop() -> None:
    """std_cli_write_stop"""
    _run("Stop the running acquisition and print the status.", lambda c, a: c.stop_writer())
