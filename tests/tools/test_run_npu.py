"""tools/run_npu.py without a simulator: every bad input is one line on stderr, exit 2, nothing written; the data
and clock it picks."""

import dataclasses
import json
import shutil

import numpy as np
import pytest

from golden.config import NPUConfig
from tools import run_npu


def _fails(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        run_npu.main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_bad_inputs_exit_2_with_one_line(reference_folder, tmp_path, capsys):
    _fails(capsys, [str(tmp_path / "nowhere")], "is not a folder")
    _fails(capsys, [str(tmp_path)], "is not a quantizer output folder: no manifest.json")
    _fails(capsys, [str(reference_folder), "--images", "0"], "positive")
    _fails(capsys, [str(reference_folder), "--images", "20", "--first", "5"], "has 24 evaluation images")
    _fails(capsys, [str(reference_folder), "--clock-mhz", "-3"], "--clock-mhz must be positive")
    _fails(capsys, [str(reference_folder), "--json", str(tmp_path / "no" / "r.json")], "does not exist")
    _fails(capsys, [str(reference_folder), "--data", str(tmp_path / "nodata")], "does not exist")
    small = tmp_path / "small"
    shutil.copytree(reference_folder, small)
    summary = json.loads((small / "memory.json").read_text())
    summary["fits"] = False
    (small / "memory.json").write_text(json.dumps(summary))
    _fails(capsys, [str(small)], "the network does not fit its configuration")
    assert not (tmp_path / "no").exists()


def test_the_job_is_the_folders_evaluation_images(reference_folder):
    network, summary, inputs, labels, indices = run_npu.load_job(reference_folder, first=3, count=5)
    results = json.loads((reference_folder / "results.json").read_text())
    assert list(indices) == list(range(results["evaluation"]["images"][0] + 3, results["evaluation"]["images"][0] + 8))
    assert inputs.shape == (5, 28, 28, 1) and inputs.dtype == np.int8 and len(labels) == 5
    assert summary["host_layers"] == [] and summary["fits"]


def test_default_clock_is_the_newest_synthesis_of_the_same_configuration(tmp_path):
    config, small = dataclasses.asdict(NPUConfig()), dataclasses.asdict(NPUConfig(lanes=2))
    assert run_npu.default_clock(config, tmp_path)[0] == run_npu.FALLBACK_CLOCK_MHZ
    for name, fmax, npu in (("controller-85k", 91.5, config), ("requantizer-85k", 200.0, config),
                            ("controller-25k-lanes2", 80.0, small)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(npu))
        (tmp_path / name / "fmax.json").write_text(json.dumps({"seeds": {"1": fmax, "2": 7.0}, "median": fmax}))
    assert run_npu.default_clock(config, tmp_path) == (91.5, str(tmp_path / "controller-85k" / "fmax.json"))
    assert run_npu.default_clock(small, tmp_path) == (80.0, str(tmp_path / "controller-25k-lanes2" / "fmax.json"))
    (tmp_path / "controller-85k-seed9").mkdir()
    (tmp_path / "controller-85k-seed9" / "config.json").write_text(json.dumps(config))
    (tmp_path / "controller-85k-seed9" / "fmax.json").write_text("{}")
    assert run_npu.default_clock(config, tmp_path) == (91.5, str(tmp_path / "controller-85k" / "fmax.json"))
