"""std_daq_sim: a simulated detector sending to the ports of a DAQ config file.

Where the server is installed too, the config is first checked by the server's own validator (run as the
command std_daq_server --check-config, so that the simulator never imports the server): a config the
server would refuse is refused here too, with the server's one-line reason.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

from sim.detector import CONTENTS, DEFAULT_FLUX, DEFAULT_NOISE, DEFAULT_PHOTON_ENERGY_KEV, SimulatedDetector
from sim.jungfrau import write_gain_maps


def server_verdict(config_file: Path) -> str | None:
    """The server's reason to refuse ``config_file`` (one line), or None if it accepts it or is not installed."""
    if importlib.util.find_spec("daq_server") is None:
        return None
    command = [sys.executable, "-m", "daq_server.serve.cli", "--config", str(config_file), "--check-config"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode == 0:
        return None
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return lines[-1].removeprefix("std_daq_server: ") if lines else f"refused by the server (exit {result.returncode})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="std_daq_sim", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, type=Path, help="the same config JSON the server uses")
    parser.add_argument("--rate", type=float, default=100.0, help="images per second (0: as fast as possible)")
    parser.add_argument("--n-images", type=int, default=0, help="images to send (0: until Ctrl-C)")
    parser.add_argument("--first-frame", type=int, default=1, help="frame number of the first image")
    parser.add_argument("--host", default="127.0.0.1", help="receiver address (default 127.0.0.1)")
    parser.add_argument(
        "--module-hosts",
        default="",
        help="scale-out: one receiver address per module, comma-separated (module i to the i-th; default: --host)",
    )
    parser.add_argument(
        "--source-address", default="", help="send from this IPv4 address, e.g. 127.0.0.2 (default: any)"
    )
    parser.add_argument("--loss", type=float, default=0.0, help="fraction of packets not sent")
    parser.add_argument("--reorder", type=int, default=0, help="shuffle packets within windows of N")
    parser.add_argument("--duplicate", type=float, default=0.0, help="fraction of packets sent twice")
    parser.add_argument("--loss-burst", type=int, default=1, help="each loss drops N consecutive packets")
    parser.add_argument("--foreign", type=float, default=0.0, help="fraction of packets preceded by a foreign datagram")
    parser.add_argument("--silent-module", type=int, default=-1, help="this module stops sending ...")
    parser.add_argument("--silent-after", type=int, default=0, help="... after N frames")
    parser.add_argument("--restart-after", type=int, default=0, help="frame numbers restart at 1 after N frames")
    parser.add_argument(
        "--static-pixels", action="store_true", help="benchmarks: repeat the first frame's pixels (headers change)"
    )
    parser.add_argument(
        "--gso", action="store_true",
        help="benchmarks: send each module's packets as UDP segmentation offload messages (the same datagrams "
        "for about half the sender's CPU, closer to a detector that costs the host nothing; not with --loss, "
        "--duplicate or --foreign)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault injection choices and the content")
    parser.add_argument(
        "--content",
        choices=list(CONTENTS),
        default="ramp",
        help="pixels: the ramp formula (default), photon counts (Eiger-like), the same photon counts as Jungfrau "
        "raw gain+ADC words (jungfrau-raw), or Jungfrau pedestal-mode dark frames (jungfrau-pedestal)",
    )
    parser.add_argument(
        "--flux", type=float, default=DEFAULT_FLUX, help=f"photons per pixel per frame (default {DEFAULT_FLUX})"
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=DEFAULT_NOISE,
        help=f"Jungfrau contents: noise sigma in gain 0, ADU (default {DEFAULT_NOISE}; gain 1: a quarter, gain 2: "
        "an eighth); --noise 0 sends the noise-free truth",
    )
    parser.add_argument(
        "--photon-energy-kev",
        type=float,
        default=DEFAULT_PHOTON_ENERGY_KEV,
        help=f"jungfrau-raw: the energy of one photon (default {DEFAULT_PHOTON_ENERGY_KEV} keV)",
    )
    parser.add_argument(
        "--broken-switch",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="jungfrau-raw fault: this fraction of pixels (chosen by --seed) has a broken gain switch and sends the "
        "invalid gain code 10 where it would leave gain 0 (default 0)",
    )
    parser.add_argument(
        "--write-gain-maps",
        type=Path,
        metavar="FILE",
        help="write the simulated Jungfrau modules' gain maps for --seed and exit (FILE.bin: PSI's binary form, "
        "one file per module; else HDF5); see docs/jungfrau.rst",
    )
    args = parser.parse_args(argv)
    refused = server_verdict(args.config)
    if refused:
        sys.exit(f"std_daq_sim: bad config {refused}")
    if args.write_gain_maps is not None:
        try:
            files = write_gain_maps(args.write_gain_maps, json.loads(args.config.read_text()), args.seed)
        except (OSError, ValueError, KeyError, TypeError) as error:
            sys.exit(f"std_daq_sim: cannot write gain maps: {' '.join(str(error).split())}")
        print(json.dumps({"gain_maps": [str(f) for f in files], "seed": args.seed}))
        return
    try:
        config = json.loads(args.config.read_text())
        detector = SimulatedDetector(
            config,
            rate_hz=args.rate,
            n_images=args.n_images,
            first_frame=args.first_frame,
            host=args.host,
            module_hosts=[a.strip() for a in args.module_hosts.split(",")] if args.module_hosts else [],
            source_address=args.source_address,
            loss=args.loss,
            reorder=args.reorder,
            duplicate=args.duplicate,
            loss_burst=args.loss_burst,
            foreign=args.foreign,
            silent_module=args.silent_module,
            silent_after=args.silent_after,
            restart_after=args.restart_after,
            static_pixels=args.static_pixels,
            gso=args.gso,
            seed=args.seed,
            content=args.content,
            flux=args.flux,
            noise=args.noise,
            photon_energy_kev=args.photon_energy_kev,
            broken_switch=args.broken_switch,
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        sys.exit(f"std_daq_sim: bad config {args.config}: {' '.join(str(error).split())}")
    detector.start()
    try:
        while detector.running:  # sleep, not join: a Ctrl-C inside Thread.join leaves the thread unjoinable
            time.sleep(0.05)
    except KeyboardInterrupt:
        detector.stop()
    if detector.error:
        sys.exit(f"std_daq_sim: {detector.error}")
    print(json.dumps(detector.counters))


if __name__ == "__main__":
    main()
