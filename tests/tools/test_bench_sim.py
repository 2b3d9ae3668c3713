"""tools/bench_sim.py as a command: bad arguments -> one line on stderr, exit 2 (nothing simulated)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("args, message", [
    (["engine_nope"], "unknown bench 'engine_nope'; choose from requant_lanes8,"),
    (["requant_lanes1", "conv"], "unknown bench 'conv'"),
    (["--lanes", "8"], "unrecognized arguments: --lanes"),
])
def test_bad_arguments_give_one_line_and_exit_2(args, message):
    result = subprocess.run([sys.executable, str(REPO / "tools" / "bench_sim.py"), *args], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr
