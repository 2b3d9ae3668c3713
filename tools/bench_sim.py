"""Simulator speed: the cocotb benches of tb/ under Icarus and under Verilator, cycles per second and the ratio.

``python tools/bench_sim.py [BENCH ...]`` runs the chosen benches (default: all) through pytest, once per simulator
(``SIM=icarus`` then ``SIM=verilator``, tb/sim.py), reads the summary each bench leaves in
``tb/sim_build/<simulator>/<bench>/summary.json`` and prints a markdown table: simulated cycles, cycles per second
under each simulator, Verilator's speed-up, and each simulator's build time (Verilator compiles the design to C++;
an unchanged design is not recompiled). The requantizer benches drive every cycle from Python; the engine benches
count the layers' cycles from ``start`` to ``done``, where the simulator runs on its own (the read-back of the outputs,
one Python step per word, is not counted). The cycle counts of the two simulators must agree.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from cli import OneLineErrorParser
from tools.quantizer.report import markdown_table

__all__ = ["BENCHES", "bench_speed", "main"]

_ROOT = Path(__file__).resolve().parents[1]
#: Where tb/sim.py's ``run_bench`` builds: ``<simulator>/<bench>/summary.json``.
_SIM_BUILD = _ROOT / "tb" / "sim_build"
_SIMULATORS = ("icarus", "verilator")

#: Bench name (tb/sim.py's build directory) -> pytest node that runs it.
BENCHES = {
    "requant_lanes8": "tb/test_requant.py::test_requantizer_bit_exact[8-64-200]",
    "requant_lanes1": "tb/test_requant.py::test_requantizer_bit_exact[1-8-100]",
    **{f"engine_{bench}": f"tb/test_engine.py::test_engine_bit_exact[{bench}]"
       for bench in ("conv", "depthwise", "fully_connected", "average_pool", "utilization", "two_bit")},
}


def bench_speed(summary):
    """``(cycles, seconds)`` of a bench summary: the whole bench (requantizer) or the sum over its layers (engine)."""
    if "layers" in summary:
        return (sum(layer["cycles"] for layer in summary["layers"]),
                sum(layer["seconds"] for layer in summary["layers"]))
    return summary["cycles"], summary["seconds"]


def _run(simulator, benches):
    """Run ``benches`` under ``simulator`` in one pytest process; their summaries, or an error line."""
    environment = dict(os.environ, SIM=simulator)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             *[BENCHES[bench] for bench in benches]],
                            cwd=_ROOT, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stdout + result.stderr).strip().splitlines()
        return None, f"SIM={simulator} pytest failed: {lines[-1] if lines else f'exit {result.returncode}'}"
    return {bench: json.loads((_SIM_BUILD / simulator / bench / "summary.json").read_text())
            for bench in benches}, None


def _parser():
    parser = OneLineErrorParser(prog="python tools/bench_sim.py", description=__doc__.splitlines()[0])
    parser.add_argument("benches", nargs="*", metavar="BENCH",
                        help=f"benches to run (default: all): {', '.join(BENCHES)}")
    return parser


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = [bench for bench in args.benches if bench not in BENCHES]
    if unknown:
        parser.error(f"unknown bench {unknown[0]!r}; choose from {', '.join(BENCHES)}")
    benches = list(dict.fromkeys(args.benches)) or list(BENCHES)

    summaries = {}
    for simulator in _SIMULATORS:
        print(f"running {len(benches)} benches under {simulator} ...", file=sys.stderr, flush=True)
        summaries[simulator], error = _run(simulator, benches)
        if error:
            print(f"{parser.prog}: error: {error}", file=sys.stderr)
            return 1

    rows, disagree = [], []
    for bench in benches:
        speeds = {simulator: bench_speed(summaries[simulator][bench]) for simulator in _SIMULATORS}
        cycles = {simulator: speed[0] for simulator, speed in speeds.items()}
        if len(set(cycles.values())) > 1:
            disagree.append(bench)
        rate = {simulator: cycles / seconds for simulator, (cycles, seconds) in speeds.items()}
        rows.append([bench, f"{cycles['icarus']:,}", *[f"{rate[simulator]:,.0f}" for simulator in _SIMULATORS],
                     f"{rate['verilator'] / rate['icarus']:.1f}x",
                     *[f"{summaries[simulator][bench]['build_seconds']:.1f}" for simulator in _SIMULATORS]])
    print(markdown_table(["bench", "cycles", *[f"{simulator} cycles/s" for simulator in _SIMULATORS],
                          "verilator / icarus", *[f"{simulator} build s" for simulator in _SIMULATORS]], rows))
    if disagree:
        print(f"{parser.prog}: error: the simulators count different cycles on {', '.join(disagree)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
