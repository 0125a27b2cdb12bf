"""``bifrost-migrate``: moving a plant from its gateway to Bifrost, one step a subcommand.

Each step is a subcommand registered in ``COMMANDS`` (a function adding its parser;
the parser's ``run`` default returns the exit code), in the order of a migration:
``config``, ``dual-write``, ``verify``, ``shadow``, ``cutover``, ``rollback``. The
steps after ``config`` take ``bifrostctl``'s connection options (``sides``) and the
gateway's store (and its HTTP API); their work is in ``feed``, ``verify`` and ``switch``.
This module holds only the command line.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
from pathlib import Path
from typing import Callable, NoReturn, Optional

from . import gateway, ignition, kepware
from ..errors import BifrostError
from .document import Conversion, parse_duration_ms
from .feed import run_dual_write
from .sides import add_cluster_options, micros, positive_seconds, seconds
from .switch import add_switch_options, run_cutover, run_rollback
from .verify import run_verify, run_shadow

EXIT_OK, EXIT_ERROR, EXIT_SKIPPED = 0, 1, 2

CONFIG_HELP = """\
Reads a source's devices and tags and writes a Bifrost import document
({"devices": [...], "tags": [...]}, for `bifrostctl import` or Client.import_config)
and a report of every item that could not be mapped, and why, or was mapped with
a change (warnings).

exit status: 0 everything mapped (warnings allowed); 2 some items were skipped
(the document holds the rest and is written all the same); 1 error (nothing written).
"""


class Parser(argparse.ArgumentParser):
    """Usage errors exit 1, not argparse's 2: 2 means "written, with items skipped"."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} {v!r}: expected NAME=VALUE")
        out[key] = value
    return out


def _run_config(args: argparse.Namespace) -> int:
    try:
        conv: Conversion
        if args.source == "gateway":
            conv = gateway.convert(args.file)
        elif args.source == "kepware":
            conv = kepware.convert(args.file, endpoint=args.endpoint, device_name=args.device, unit=args.unit,
                                   interval_ms=parse_duration_ms(args.interval),
                                   timeout_ms=parse_duration_ms(args.timeout), word_order=args.word_order,
                                   prefix=args.prefix)
        else:
            groups = {k: parse_duration_ms(v) for k, v in _pairs(args.tag_group, "--tag-group").items()}
            conv = ignition.convert(args.file, devices=[ignition.ModbusConnection.parse(d) for d in args.device],
                                    opc_servers=_pairs(args.opc_server, "--opc-server"), tag_groups=groups,
                                    interval_ms=parse_duration_ms(args.interval), prefix=args.prefix)
    except (OSError, ValueError) as e:  # unreadable file, bad JSON/YAML/option
        print(f"bifrost-migrate: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # noqa: BLE001 - e.g. yaml.YAMLError, a file of another format
        print(f"bifrost-migrate: error: {args.file}: {e}", file=sys.stderr)
        return EXIT_ERROR
    if args.disabled:
        for d in conv.devices:
            d["enabled"] = False
    report = conv.report_json() if args.report_format == "json" else conv.report_text()
    try:
        if args.output in (None, "-"):
            sys.stdout.write(conv.to_json())
        else:
            Path(args.output).write_text(conv.to_json())
        if args.report in (None, "-"):
            sys.stderr.write(report)
        else:
            Path(args.report).write_text(report)
    except OSError as e:
        print(f"bifrost-migrate: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_SKIPPED if conv.skipped else EXIT_OK


def add_config(sub: "argparse._SubParsersAction[Parser]") -> None:
    p = sub.add_parser("config", help="convert a gateway config, Kepware CSV or Ignition JSON to a Bifrost "
                       "import document", description=CONFIG_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sources = p.add_subparsers(dest="source", required=True, metavar="SOURCE", parser_class=Parser)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-o", "--output", help="the document (default stdout)")
        sp.add_argument("--report", help="the report (default stderr)")
        sp.add_argument("--report-format", choices=("text", "json"), default="text")
        sp.add_argument("--disabled", action="store_true",
                        help="devices not polled by Bifrost until enabled (by cutover): for dual-writing")
        sp.set_defaults(run=_run_config)

    g = sources.add_parser("gateway", help="the reference gateway's YAML config (examples/python-gateway)",
                           description=CONFIG_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("file", help="gateway config (YAML)")
    common(g)

    k = sources.add_parser("kepware", help="a Kepware Modbus device's tag CSV export",
                           description=CONFIG_HELP + "\nThe device's settings are not in the CSV: give its "
                           "endpoint (and unit id).", formatter_class=argparse.RawDescriptionHelpFormatter)
    k.add_argument("file", help="CSV export of one device (Tag Name, Address, Data Type, ...)")
    k.add_argument("--endpoint", required=True, help="the device's HOST:PORT")
    k.add_argument("--device", help="Bifrost device name (default: the file's name without .csv)")
    k.add_argument("--unit", type=int, default=1, help="Modbus unit id (1)")
    k.add_argument("--interval", default="1s", help="device poll interval (1s)")
    k.add_argument("--timeout", default="1s", help="request timeout (1s)")
    k.add_argument("--word-order", choices=("big", "little"), default="little",
                   help="32/64-bit word order (little: Kepware's default, 'First word low')")
    k.add_argument("--prefix", help="tag name prefix (default DEVICE/); tag groups become path segments")
    common(k)

    i = sources.add_parser("ignition", help="an Ignition tag export (JSON)",
                           description=CONFIG_HELP + "\nDevice endpoints are not in the export: name each "
                           "Modbus device connection with --device.",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    i.add_argument("file", help="tag export (JSON) of a provider or folder")
    i.add_argument("--device", action="append", default=[], metavar="NAME=HOST:PORT[,unit=N][,zero-based]"
                   "[,word-order=little]", help="an Ignition Modbus TCP device connection (repeatable)")
    i.add_argument("--opc-server", action="append", default=[], metavar="NAME=opc.tcp://HOST:PORT",
                   help="an OPC UA server connection of Ignition (opcServer); its tags map by NodeId")
    i.add_argument("--tag-group", action="append", default=[], metavar="NAME=DURATION",
                   help="a tag group's rate, the tags' scan rate (Default: the device interval)")
    i.add_argument("--interval", default="1s", help="device poll interval: the Default tag group's rate (1s)")
    i.add_argument("--prefix", default="", help="tag name prefix (the folder path follows)")
    common(i)


def add_dual_write(sub: "argparse._SubParsersAction[Parser]") -> None:
    p = sub.add_parser("dual-write", help="send the gateway's readings to Bifrost too (plug-in or store tailer)",
                       description="With --store: follow the gateway's reading store and send every new "
                       "reading to Bifrost (spooled in --spool while it is unreachable) until SIGINT/SIGTERM. "
                       "Without: print the gateway config that loads the dual-write plug-in instead.")
    add_cluster_options(p)
    p.add_argument("--spool", required=True, help="spool directory (durable; dead-letter.jsonl is in it)")
    p.add_argument("--store", help="the gateway's reading store (SQLite) to follow")
    p.add_argument("--start", choices=("beginning", "end"), default="beginning",
                   help="with no checkpoint in the spool yet: send the store's whole history (beginning, "
                   "the default) or only readings stored from now on (end)")
    p.add_argument("--drain-timeout", type=seconds, default=10.0,
                   help="seconds to send what is pending at the stop before it stays in the spool (10)")
    p.set_defaults(run=run_dual_write)


def add_verify(sub: "argparse._SubParsersAction[Parser]") -> None:
    p = sub.add_parser("verify", help="compare the readings of both per tag and hour",
                       description="Per tag and hour: counts, min/max/avg and a hash of the readings (time, "
                       "quality, value) in the gateway's store and in Bifrost; prints the hours that differ. "
                       "Times: ISO 8601, microseconds since 1970, now, now-DURATION (now-10m).",
                       epilog="exit status: 0 the same; 1 any mismatch or error")
    add_cluster_options(p)
    p.add_argument("--store", required=True, help="the gateway's reading store (SQLite)")
    p.add_argument("--from", dest="from_", required=True, metavar="TIME", help="start (inclusive)")
    p.add_argument("--to", default="now-10s", metavar="TIME",
                   help="end (exclusive; default now-10s, so readings on their way are not counted)")
    p.add_argument("--tag", action="append", default=[], help="a tag to compare (repeatable; default: all "
                   "tags of the gateway's store)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(run=run_verify)


def add_shadow(sub: "argparse._SubParsersAction[Parser]") -> None:
    p = sub.add_parser("shadow", help="compare the current values of both for a while and report drift",
                       description="Samples each tag's newest reading in the gateway's store and in Bifrost "
                       "every --every seconds for --minutes and reports per tag: readings of the same time "
                       "whose values differ, the largest value difference, the largest time lag.",
                       epilog="exit status: 0 no drift; 1 a tag with a mismatched reading, a lag over "
                       "--max-lag, a difference over --tolerance, or no reading on one side")
    add_cluster_options(p)
    p.add_argument("--store", required=True, help="the gateway's reading store (SQLite)")
    p.add_argument("--minutes", type=positive_seconds, default=5.0, help="how long to watch (5)")
    p.add_argument("--every", type=positive_seconds, default=1.0, help="seconds between samples (1)")
    p.add_argument("--tolerance", type=float, help="largest value difference allowed (default: not checked; "
                   "both polling, values drift with time)")
    p.add_argument("--max-lag", dest="max_lag_us", type=micros, default=10_000_000,
                   metavar="SECONDS", help="largest time difference of the newest readings allowed (10)")
    p.add_argument("--tag", action="append", default=[], help="a tag to watch (repeatable; default: all)")
    p.set_defaults(run=run_shadow)


def add_cutover(sub: "argparse._SubParsersAction[Parser]") -> None:
    p = sub.add_parser("cutover", help="Bifrost polls the devices, the gateway stops, with an overlap; checked",
                       description="Enables the devices in Bifrost, waits for a good reading of every tag, "
                       "lets both poll for --overlap seconds, stops the gateway's polling (POST /polling), "
                       "waits for its last readings in Bifrost, then checks Bifrost's history across the "
                       "switch for gaps (and counters for lost counts).",
                       epilog="exit status: 0 done and no gap; 1 gaps found or abandoned (Bifrost not "
                       "polling well: it is stopped again and the gateway polls on)")
    add_cluster_options(p)
    add_switch_options(p)
    p.set_defaults(run=run_cutover)


def add_rollback(sub: "argparse._SubParsersAction[Parser]") -> None:
    p = sub.add_parser("rollback", help="the gateway polls again, Bifrost stops; Bifrost's readings copied back",
                       description="Resumes the gateway's polling, waits for its good readings, overlaps, "
                       "disables the devices in Bifrost, then copies Bifrost's readings since the cutover "
                       "(--from, default: from the state file) into the gateway's store and checks it for gaps.",
                       epilog="exit status: 0 done and no gap; 1 gaps found or error")
    add_cluster_options(p)
    add_switch_options(p)
    p.add_argument("--from", dest="from_", metavar="TIME", help="start of the readings to copy back "
                   "(default: the cutover's start in --state)")
    p.set_defaults(run=run_rollback)


# The subcommands, in the order of a migration.
COMMANDS: list[Callable[["argparse._SubParsersAction[Parser]"], None]] = [
    add_config, add_dual_write, add_verify, add_shadow, add_cutover, add_rollback]


def parser() -> Parser:
    p = Parser(prog="bifrost-migrate", description="Move a plant's tags and readings from its gateway to Bifrost.",
               epilog="exit status: 0 success; 1 error; 2 done with items skipped (config)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for add in COMMANDS:
        add(sub)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args))
    except (ValueError, TimeoutError, RuntimeError, OSError, sqlite3.Error, BifrostError) as e:
        print(f"bifrost-migrate {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
