"""Command line tools (``std_cli_*``) for the std-daq REST API.

Every tool accepts ``--url-base URL`` (also spelled ``--url_base``, alias ``-b``); without it the environment
variable ``STD_DAQ_API_URL`` is used, then ``http://localhost:5000``. ``--token TOKEN`` (default: the
environment variable ``STD_DAQ_TOKEN``) is sent as a bearer token, for a server that requires one.
``--wait SECONDS`` waits up to that long for the server to answer first (e.g. right after starting it).
On success the returned object is printed as indented JSON on stdout (exit code 0); on failure one line
``error: <message>`` goes to stderr (exit code 1). ``std_cli_write_sync`` has more exit codes (see there).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from ._client import TOKEN_ENV_VAR, StdDaqClient
from ._exceptions import StdDaqAdminException
from ._write_sync import EXIT_FAILED, EXIT_INCOMPLETE, write_and_follow
from .acquisitions import WriterState

DEFAULT_URL_BASE = "http://localhost:5000"
URL_ENV_VAR = "STD_DAQ_API_URL"


class _CliError(Exception):
    """A problem detected by the CLI itself (e.g. an unreadable config file)."""


class _Outcome:
    """A result with an exit code other than 0 (std_cli_write_sync)."""

    def __init__(self, result: Any, code: int):
        self.result, self.code = result, code


def _run(
    description: str,
    call: Callable[[StdDaqClient, argparse.Namespace], Any],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    epilog: str | None = None,
) -> None:
    """Parse sys.argv, run ``call(client, args)``, print its result as JSON and exit."""
    parser = argparse.ArgumentParser(
        description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--url-base",
        "--url_base",
        "-b",
        dest="url_base",
        metavar="URL",
        default=os.environ.get(URL_ENV_VAR) or DEFAULT_URL_BASE,
        help=f"base URL of the std-daq REST API (default: ${URL_ENV_VAR} or {DEFAULT_URL_BASE})",
    )
    parser.add_argument(
        "--token",
        default=None,
        help=f"bearer token for a server that requires one (default: ${TOKEN_ENV_VAR}, if set)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS for the server to answer before the request (default: 0, no wait)",
    )
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()

    try:
        client = StdDaqClient(url_base=args.url_base, token=args.token)
        if args.wait > 0:
            client.wait_for_server(args.wait)
        result = call(client, args)
    except (StdDaqAdminException, RuntimeError, _CliError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
    code = 0
    if isinstance(result, _Outcome):
        result, code = result.result, result.code
    print(json.dumps(result, indent=2))
    sys.exit(code)


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
        "--run-id",
        "--run_id",
        dest="run_id",
        type=int,
        default=None,
        metavar="INT",
        help="run id (default: chosen by the server)",
    )
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "--pedestal",
        action="store_true",
        help="a Jungfrau pedestal: the N_IMAGES dark frames of the detector's pedestal mode become the pedestal "
        "file OUTPUT_FILE, which later acquisitions convert with",
    )
    kind.add_argument(
        "--raw", action="store_true", help="write the raw Jungfrau words although the config asks for a conversion"
    )
    parser.add_argument(
        "--incident-energy",
        "--incident_energy",
        dest="incident_energy",
        type=float,
        default=None,
        metavar="KEV",
        help="photon energy in keV (a conversion to photons needs it, unless the config has a default)",
    )


def _write_request(args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {"output_file": args.output_file, "n_images": args.n_images}
    if args.run_id is not None:
        request["run_id"] = args.run_id
    if args.pedestal:
        request["pedestal"] = True
    if args.raw:
        request["raw"] = True
    if args.incident_energy is not None:
        request["incident_energy"] = args.incident_energy
    return request


EXIT_NOT_READY_TO_ACQUIRE = 5
"""std_cli_get_status: the writer is in state ERROR: the DAQ cannot acquire (``reason`` in the status says why)."""


def get_status() -> None:
    """std_cli_get_status"""

    def call(client: StdDaqClient, args: argparse.Namespace) -> _Outcome:
        status = client.get_status()
        return _Outcome(status, EXIT_NOT_READY_TO_ACQUIRE if status.get("state") == WriterState.ERROR else 0)

    _run(
        "Print the DAQ status (writer state and last acquisition).",
        call,
        epilog=f"exit status: 0 the status was read; {EXIT_NOT_READY_TO_ACQUIRE} the writer is in state ERROR (the "
        "DAQ cannot acquire, its 'reason' says why); 1 the server could not be asked",
    )


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
            "--n-last-logs",
            "--n_last_logs",
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
    """std_cli_write_async OUTPUT_FILE N_IMAGES [--run-id INT] [--pedestal | --raw] [--incident-energy KEV]"""
    _run(
        "Start writing N_IMAGES images to OUTPUT_FILE and print the status without waiting.",
        lambda c, a: c.start_writer_async(_write_request(a)),
        _add_write_arguments,
    )


WRITE_SYNC_EXIT_CODES = f"""exit codes:
  0    every requested image was written
  1    no acquisition: the server is unreachable or refused the request (message on stderr)
  2    wrong command line
  {EXIT_FAILED}    the acquisition FAILED (its message says why); the file keeps the images written before
  {EXIT_INCOMPLETE}    the acquisition ended with fewer images than requested (stopped by another client)
  130  interrupted by SIGINT (Ctrl-C), 143 by SIGTERM: this command stopped the acquisition first
       ("Interrupted."); the file keeps the images written before
"""


def write_sync() -> None:
    """std_cli_write_sync OUTPUT_FILE N_IMAGES [--run-id INT] [--pedestal | --raw] [--incident-energy KEV]
    [--progress | --no-progress]"""

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        _add_write_arguments(parser)
        parser.add_argument(
            "--progress",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="progress on stderr: a bar with rate and time left on a terminal, a line per second otherwise "
            "(default: only when stderr is a terminal)",
        )

    def call(client: StdDaqClient, args: argparse.Namespace) -> _Outcome:
        tty = sys.stderr.isatty()
        show = tty if args.progress is None else args.progress
        mode = ("bar" if tty else "lines") if show else "none"
        status, code = write_and_follow(client, _write_request(args), mode)
        return _Outcome(status, code)

    _run(
        "Write N_IMAGES images to OUTPUT_FILE, follow the acquisition to its end and print the final status. "
        "SIGINT (Ctrl-C) and SIGTERM stop the acquisition, with or without a terminal.",
        call,
        add_arguments,
        epilog=WRITE_SYNC_EXIT_CODES,
    )


def write_stop() -> None:
    """std_cli_write_stop"""
    _run("Stop the running acquisition and print the status.", lambda c, a: c.stop_writer())
