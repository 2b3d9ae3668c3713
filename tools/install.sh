#!/usr/bin/env bash
# Installs everything the toolkit needs on Debian 12 / Python 3.11 (as root): Icarus Verilog and the Fashion-MNIST
# data package from apt when missing, then this project with its test and synthesis extras (yowasp wheels) from PyPI.
# Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v iverilog >/dev/null || missing+=(iverilog)
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
PIP_ROOT_USER_ACTION=ignore python -m pip install -q --disable-pip-version-check -e ".[dev,synth]"
