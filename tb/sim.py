"""Shared cocotb plumbing: Amaranth component -> Verilog -> Icarus -> cocotb test module, one build dir per case.

A bench is two files: a pytest launcher (``tb/test_*.py``) that calls :func:`run_bench`, and a cocotb module
(``tb/*_bench.py``) that reads its arguments with :func:`bench_args` and writes a summary with :func:`write_summary`.
"""

import json
import os
import re
import sys
from pathlib import Path

import cocotb
from amaranth.back import verilog
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge
from cocotb_tools.runner import get_results, get_runner

__all__ = ["SIM_BUILD", "run_bench", "bench_args", "write_summary", "reset", "pack_lanes", "unpack_lanes"]

TB_DIR = Path(__file__).resolve().parent
SIM_BUILD = TB_DIR / "sim_build"
_ARGS_VARIABLE = "NPU_BENCH_ARGS"


def run_bench(component, *, name, test_module, args, toplevel="top"):
    """Build ``component`` with Icarus and run the cocotb ``test_module`` on it.

    Parameters
    ----------
    component : wiring.Component
        The design; its Verilog goes to ``tb/sim_build/<name>/<toplevel>.v``.
    name : str
        Unique per parametrization (it names the build directory, so parallel runs never share one).
    test_module : str
        The cocotb module in tb/ (without ``.py``).
    args : dict
        JSON-serialisable arguments, available in the bench through :func:`bench_args`. ``build_dir`` is added.

    Returns
    -------
    dict
        The summary the bench wrote with :func:`write_summary`.

    Raises
    ------
    AssertionError
        If a cocotb test failed (its log names the first mismatch) or none ran.
    """
    build_dir = SIM_BUILD / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / f"{toplevel}.v"
    source.write_text(verilog.convert(component, name=toplevel, emit_src=False))
    summary_path = build_dir / "summary.json"
    summary_path.unlink(missing_ok=True)

    runner = get_runner("icarus")
    runner.build(sources=[source], hdl_toplevel=toplevel, build_dir=build_dir, always=True,
                 timescale=("1ns", "1ps"))
    pythonpath = os.pathsep.join([str(TB_DIR), *sys.path])
    results = runner.test(hdl_toplevel=toplevel, test_module=test_module, build_dir=build_dir,
                          test_dir=build_dir, timescale=("1ns", "1ps"),
                          extra_env={_ARGS_VARIABLE: json.dumps({**args, "build_dir": str(build_dir)}),
                                     "PYTHONPATH": pythonpath})
    tests, failures = get_results(results)
    assert tests > 0, f"{test_module}: no cocotb test ran"
    assert failures == 0, f"{test_module}: {failures} of {tests} cocotb tests failed (log above names the mismatch)"
    return json.loads(summary_path.read_text())


def bench_args():
    """The ``args`` dict given to :func:`run_bench` (inside the simulator process)."""
    return json.loads(os.environ[_ARGS_VARIABLE])


def write_summary(args, **summary):
    """Hand numbers (vectors, mismatches, speed) back to the pytest launcher."""
    Path(args["build_dir"], "summary.json").write_text(json.dumps(summary))


async def reset(dut, **idle):
    """Start a 100 MHz clock on ``dut.clk`` and hold ``dut.rst`` for three cycles with the ``idle`` inputs driven
    (e.g. ``i__valid=0``); returns at a falling edge, the bench's point for driving inputs."""
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for name, value in idle.items():
        getattr(dut, name).value = value
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0


def pack_lanes(values, width):
    """Pack integers (lane 0 in the least significant bits) into one ``len(values) * width``-bit unsigned int."""
    mask = (1 << width) - 1
    packed = 0
    for lane, value in enumerate(values):
        packed |= (int(value) & mask) << (lane * width)
    return packed


def unpack_lanes(packed, width, lanes, *, signed=True):
    """Inverse of :func:`pack_lanes`."""
    mask = (1 << width) - 1
    values = [(packed >> (lane * width)) & mask for lane in range(lanes)]
    if signed:
        values = [value - (1 << width) if value >> (width - 1) else value for value in values]
    return values
