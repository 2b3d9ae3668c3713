"""Constrained-random engine regression: random layers on the engine's RTL, every output and the whole activation
memory compared with golden, and a functional-coverage table.

``python tools/regress.py --outputs 10000000 --seed N`` runs at least that many outputs (a quarter on the two-bit
engine) under Verilator (tb/regress_cases.py, tb/regress_bench.py); without ``--seed`` a random seed is drawn and
printed. It prints a line per build, a table (layers, outputs, cycles, failing layers, build and run seconds) and the
coverage table; a failing layer leaves a repro bundle in ``--bundles`` and its line names the command that runs it
again: ``python tools/regress.py --replay BUNDLE``. Exit status 1 when a layer fails.
"""

import secrets
import sys
from pathlib import Path

from cli import OneLineErrorParser, int_at_least

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tb"))

from regress_cases import BUNDLES, coverage_table, replay, run_regression  # noqa: E402 (tb/ is not a package)
from sim import SIMULATORS  # noqa: E402
from tools.quantizer.report import markdown_table  # noqa: E402

__all__ = ["main"]


def _parser():
    parser = OneLineErrorParser(prog="python tools/regress.py", description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=int_at_least(1, "positive"), default=10_000_000,
                        help="outputs to compare at least (default 10,000,000)")
    parser.add_argument("--seed", type=int_at_least(0, "non-negative"), help="the stream's seed (default: random)")
    parser.add_argument("--bundles", type=Path, default=BUNDLES, help=f"repro bundles of failing layers ({BUNDLES})")
    parser.add_argument("--sim", choices=SIMULATORS, default="verilator", help="simulator (default verilator)")
    parser.add_argument("--replay", type=Path, metavar="BUNDLE", help="run one repro bundle's layer again")
    return parser


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.replay is not None:
        if not (args.replay / "descriptor.json").is_file():
            parser.error(f"{str(args.replay)!r} is not a repro bundle (no descriptor.json)")
        failures = replay(args.replay, sim=args.sim)["failures"]
        print(failures[0] if failures else f"replay of {args.replay}: passes")
        return 1 if failures else 0
    seed = secrets.randbelow(1 << 31) if args.seed is None else args.seed
    print(f"regression seed {seed}, {args.outputs:,} outputs", flush=True)
    result = run_regression(args.outputs, seed, bundles=args.bundles, sim=args.sim,
                            report=lambda line: print(line, flush=True))
    builds = result["builds"]
    print(markdown_table(("build", "layers", "outputs", "cycles", "failing layers", "build s", "run s"),
                         [(name, f"{s['layers']:,}", f"{s['outputs']:,}", f"{s['cycles']:,}", len(s["failures"]),
                           f"{s['build_seconds']:.0f}", f"{s['run_seconds']:.0f}") for name, s in builds.items()]))
    print(coverage_table(result["coverage"]))
    failures = [message for summary in builds.values() for message in summary["failures"]]
    for message in failures:
        print(message)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
