"""Shared pytest plumbing: the quantized reference model, oracle counts reported in the terminal summary, an Icarus
Verilog runner."""

import shutil
import subprocess

import pytest

CALIBRATION_IMAGES, TEST_IMAGES = 100, 64

_ORACLE_COUNTS = pytest.StashKey[dict]()


@pytest.fixture
def oracle_counts(request):
    """``record(label, layers=, elements=, mismatches=)``: add one comparison's counts to the run's summary."""
    counts = request.config.stash.setdefault(_ORACLE_COUNTS, {})

    def record(label, *, layers, elements, mismatches):
        total = counts.setdefault(label, [0, 0, 0])
        for i, value in enumerate((layers, elements, mismatches)):
            total[i] += int(value)

    return record


@pytest.fixture
def icarus(tmp_path):
    """``run(files)``: write ``{name: text}`` into ``tmp_path``, compile its ``.v`` files with Icarus Verilog
    (``-g2012``), run the simulation there and return what it printed; skips the test without Icarus."""
    if shutil.which("iverilog") is None:
        pytest.skip("Icarus Verilog (apt install iverilog) is not installed")

    def run(files):
        for name, text in files.items():
            (tmp_path / name).write_text(text)
        sources = [name for name in files if name.endswith(".v")]
        compiled = subprocess.run(["iverilog", "-g2012", "-o", "bench.vvp", *sources], cwd=tmp_path,
                                  capture_output=True, text=True)
        assert compiled.returncode == 0, compiled.stderr
        return subprocess.run(["vvp", "-n", "bench.vvp"], cwd=tmp_path, capture_output=True, text=True).stdout

    return run


def pytest_terminal_summary(terminalreporter, config):
    counts = config.stash.get(_ORACLE_COUNTS, {})
    if not counts:
        return
    terminalreporter.section("oracle comparisons")
    for label, (layers, elements, mismatches) in counts.items():
        terminalreporter.write_line(f"{label}: {layers} layers, {elements} elements, {mismatches} mismatching")


@pytest.fixture(scope="session")
def quantized_reference():
    """The reference model quantized by tools/quantize.py with every weight method (minmax calibration on the first
    100 Fashion-MNIST test images), and the next 64 images as an int8 NHWC batch: ``({method: Network}, x)``."""
    from golden import network as gnet
    from tools.quantizer.build import build_network
    from tools.quantizer.calibrate import calibrate
    from tools.quantizer.datasets import load_dataset
    from tools.quantizer.frontend import load_graph
    from tools.quantizer.pipeline import DEFAULT_MODEL
    from tools.quantizer.weights import METHODS

    graph = load_graph(DEFAULT_MODEL)
    dataset = load_dataset(graph, progress=False)
    ranges = calibrate(graph, dataset.images[:CALIBRATION_IMAGES], method="minmax", progress=False)
    networks = {method: build_network(graph, ranges, method=method, input_range=dataset.input_range,
                                      preprocessing=dataset.contract)[0] for method in METHODS}
    x = gnet.quantize_input(networks["wess"], dataset.images[CALIBRATION_IMAGES:CALIBRATION_IMAGES + TEST_IMAGES])
    return networks, x
