"""Engine benchmark: per layer kind (RTL in Icarus) and for a MobileNet's layers (cycle model): MACs, cycles, use.

``python tools/bench_engine.py`` builds the engine's Verilog once with one random layer of each kind in its memories,
runs each layer alone in Icarus from a self-running Verilog testbench (no Python in the loop), checks the RTL's cycle
counter against the cycle model (``golden/sequencer.py``) and its whole output against the golden model, and prints
MACs, cycles, MAC utilization and simulated cycles per second. Then it prints the same table, from the cycle model,
for MobileNetV2's layers at ``--resolution`` (the 52 convolutions, the 10 residual adds, the pool and the classifier),
or for the layers of an ONNX model given with ``--model``, with each layer's and each kind's share of the cycles.

Utilization is the layer's MACs (as usually counted, ``LayerDescriptor.macs``) over ``lanes**2`` times the cycles the
engine is busy, pipeline fill and drain included; a residual add does no MACs (0 %), it reads two words per output
word. Build files go to ``build/bench_engine/``.
"""

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from golden.config import NPUConfig
from golden.descriptor import descriptor_fields, encode_descriptor, layer_descriptor, unbounded_config
from golden.images import load_activation
from golden.layouts import activation_words, address_bits
from golden.sequencer import layer_cycles
from cli import OneLineErrorParser
from golden.stimulus import fitted_config, random_layers

__all__ = ["KIND_LAYERS", "mobilenet_v2_layers", "model_layers", "simulate", "main"]

#: One layer per kind for the RTL run: (name, kind, input (H, W, C), output channels, kernel, stride, padding).
KIND_LAYERS = [
    ("conv 1x1", "conv", (14, 14, 64), 64, (1, 1), (1, 1), (0, 0, 0, 0)),
    ("conv 3x3 s1", "conv", (14, 14, 32), 32, (3, 3), (1, 1), (1, 1, 1, 1)),
    ("conv 3x3 s2", "conv", (28, 28, 16), 32, (3, 3), (2, 2), (0, 1, 0, 1)),
    ("depthwise 3x3 s1", "depthwise", (28, 28, 32), 32, (3, 3), (1, 1), (1, 1, 1, 1)),
    ("depthwise 3x3 s2", "depthwise", (28, 28, 32), 32, (3, 3), (2, 2), (0, 1, 0, 1)),
    ("fully connected", "fully_connected", (1, 1, 256), 64, (1, 1), (1, 1), (0, 0, 0, 0)),
    ("global average pool", "average_pool", (7, 7, 64), 64, (7, 7), (1, 1), (0, 0, 0, 0)),
    ("residual add", "add", (14, 14, 64), 64, (1, 1), (1, 1), (0, 0, 0, 0)),
]

BUILD = Path("build/bench_engine")


def mobilenet_v2_layers(resolution=224):
    """MobileNetV2 (width 1.0) as ``(name, kind, input (H, W, C), output channels, kernel, stride, padding)``.

    The 52 convolutions (stem 3x3/2, 17 inverted residual blocks of expand 1x1, depthwise 3x3, project 1x1 — the
    first without expansion —, final 1x1 to 1280), the 10 residual adds (blocks of stride 1 that keep their
    channels), the global average pool and the 1000-class classifier; padding as PyTorch's export (symmetric 1 for
    the 3x3 layers).
    """
    layers = []
    size, channels = resolution, 3

    def conv(name, kind, cout, kernel, stride):
        nonlocal size, channels
        pad = kernel // 2
        layers.append((name, kind, (size, size, channels), cout, (kernel, kernel), (stride, stride), (pad,) * 4))
        size = (size + 2 * pad - kernel) // stride + 1
        channels = cout

    conv("features.0 conv 3x3/2", "conv", 32, 3, 2)
    block = 1
    for expansion, cout, repeats, stride in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                                             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        for repeat in range(repeats):
            block_in, hidden = channels, channels * expansion
            if expansion != 1:
                conv(f"features.{block} expand 1x1", "conv", hidden, 1, 1)
            conv(f"features.{block} depthwise 3x3/{stride if repeat == 0 else 1}", "depthwise", hidden, 3,
                 stride if repeat == 0 else 1)
            conv(f"features.{block} project 1x1", "conv", cout, 1, 1)
            if repeat and block_in == cout:
                layers.append((f"features.{block} add", "add", (size, size, cout), cout, (1, 1), (1, 1), (0,) * 4))
            block += 1
    conv("features.18 conv 1x1", "conv", 1280, 1, 1)
    layers.append(("pool", "average_pool", (size, size, channels), channels, (size, size), (1, 1), (0,) * 4))
    layers.append(("classifier", "fully_connected", (1, 1, channels), 1000, (1, 1), (1, 1), (0,) * 4))
    return layers


def model_layers(path):
    """The engine layers of an ONNX model (``tools.quantizer.frontend``), in the format of :func:`mobilenet_v2_layers`."""
    from tools.quantizer.frontend import load_graph

    graph = load_graph(path)
    layers = []
    for node in graph.nodes:
        kind = type(node).__name__
        shape = graph.shapes[node.input] if hasattr(node, "input") else None
        if kind == "Conv" and (node.groups == 1 or node.depthwise):
            c, h, w = shape
            kernel = tuple(node.weights.shape[2:])
            layers.append((node.name, "depthwise" if node.depthwise else "conv", (h, w, c), node.weights.shape[0],
                           kernel, tuple(node.stride), tuple(node.padding)))
        elif kind == "FullyConnected":
            layers.append((node.name, "fully_connected", (1, 1, shape[0]), node.weights.shape[0], (1, 1), (1, 1),
                           (0,) * 4))
        elif kind == "Pool" and node.kernel is None:
            c, h, w = shape
            layers.append((node.name, "average_pool", (h, w, c), c, (h, w), (1, 1), (0,) * 4))
        elif kind == "Add" and len({tuple(graph.shapes[name]) for name in node.inputs}) == 1 \
                and len(graph.shapes[node.inputs[0]]) == 3:
            c, h, w = graph.shapes[node.inputs[0]]
            layers.append((node.name, "add", (h, w, c), c, (1, 1), (1, 1), (0,) * 4))
    return layers


def simulate(cases, images, config, directory, *, progress=True):
    """Run every case's layer on the engine's Verilog in Icarus; return per case the RTL counters and wall time.

    Each layer runs alone (``vvp +layer=N``): the wall time of an empty run (Verilog start-up, memory initialisation)
    is subtracted, so ``seconds`` is the simulation of the layer itself. A last run executes every layer in turn and
    reads each output back through the host port; the result holds the output tensors (``"outputs"``).
    """
    from amaranth.back import verilog

    from hdl.engine import Engine

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "engine.v").write_text(verilog.convert(Engine(config, images=images), name="engine",
                                                        emit_src=False))
    (directory / "bench.v").write_text(_testbench(cases, config))
    subprocess.run(["iverilog", "-g2012", "-o", str(directory / "bench.vvp"), str(directory / "bench.v"),
                    str(directory / "engine.v")], check=True, capture_output=True)

    def run(*plusargs):
        started = time.perf_counter()
        output = subprocess.run(["vvp", "-n", str(directory / "bench.vvp"), *plusargs], check=True,
                                capture_output=True, text=True).stdout
        return output, time.perf_counter() - started

    _, baseline = run("+layer=-1")
    results = []
    for index, case in enumerate(tqdm(cases, desc="Icarus", unit="layer", disable=not progress, leave=False)):
        output, seconds = run(f"+layer={index}")
        cycles, active, macs = map(int, re.search(r"LAYER \d+ (\d+) (\d+) (\d+)", output).groups())
        results.append(dict(cycles=cycles, active_cycles=active, mac_ops=macs, seconds=max(seconds - baseline, 1e-6)))
    output, _ = run("+layer=-2")
    image = np.zeros_like(images.activation)
    for bank, address, word in re.findall(r"W (\d+) (\d+) ([0-9a-fA-FxXzZ]+)", output):
        value = int(word, 16)
        image[int(bank), int(address)] = [((value >> (8 * lane)) & 0xFF) - (((value >> (8 * lane + 7)) & 1) << 8)
                                          for lane in range(config.lanes)]
    for case, result in zip(cases, results):
        d = case.descriptor
        result["output"] = load_activation(image, d.out_shape, base=d.out_base, pitch=d.out_row_pitch, config=config,
                                           skew=d.out_skew)
    return results


def _testbench(cases, config):
    # A self-running testbench: +layer=N runs layer N only, +layer=-2 runs all and prints their outputs (host port).
    width = sum(w for _, w, _ in descriptor_fields(config))
    bank_bits, act_bits = max(1, config.lane_bits), address_bits(config.act_depth)
    layers = []
    for index, case in enumerate(cases):
        d = case.descriptor
        words = d.out_height * d.out_row_pitch
        layers.append(f"""    if (layer == {index} || layer == -2) begin
      run_layer({width}'h{encode_descriptor(d, config):x});
      $display("LAYER {index} %0d %0d %0d", cycles, active_cycles, mac_ops);
      if (layer == -2) read_region({d.out_base}, {words});
    end""")
    body = "\n".join(layers)
    return f"""`timescale 1ns/1ps
module bench;
  reg clk = 0, rst = 0, start = 0, host_write = 0;
  reg [{width - 1}:0] descriptor = 0;
  reg [{bank_bits - 1}:0] host_bank = 0;
  reg [{act_bits - 1}:0] host_address = 0;
  wire busy, done;
  wire [47:0] cycles, active_cycles, mac_ops;
  wire [{config.lanes * 8 - 1}:0] host_read_data;
  integer layer, bank, address;
  engine dut(.clk(clk), .rst(rst), .start(start), .descriptor(descriptor), .busy(busy), .done(done),
             .cycles(cycles), .active_cycles(active_cycles), .mac_ops(mac_ops), .host__bank(host_bank),
             .host__address(host_address), .host__write(host_write), .host__write_data({config.lanes * 8}'d0),
             .host__read_data(host_read_data), .weight_load__address(0), .weight_load__data(0),
             .weight_load__write(1'b0), .bias_load__address(0), .bias_load__data(0), .bias_load__write(1'b0));
  always #5 clk = ~clk;
  task run_layer(input [{width - 1}:0] value);
    begin
      @(negedge clk); descriptor = value; start = 1;
      @(negedge clk); start = 0;
      @(posedge done); @(negedge clk);
    end
  endtask
  task read_region(input integer base, input integer words);
    begin
      for (bank = 0; bank < {config.lanes}; bank = bank + 1)
        for (address = base; address < base + words; address = address + 1) begin
          host_bank = bank; host_address = address;
          @(negedge clk); @(negedge clk);
          $display("W %0d %0d %h", bank, address, host_read_data);
        end
    end
  endtask
  initial begin
    if (!$value$plusargs("layer=%d", layer)) layer = -2;
    #1 rst = 1; #20 rst = 0;
{body}
    $finish;
  end
endmodule
"""


def _table(rows, config, *, sim=False, total_cycles=None):
    # rows: dicts with name, macs, cycles[, rtl_cycles, cycles_per_second, mismatches]; with total_cycles a column of
    # each row's share of them
    head = f"{'layer':<34} {'MACs':>14} {'cycles':>12} {'utilization':>11}"
    if total_cycles:
        head += f" {'cycle share':>11}"
    if sim:
        head += f" {'RTL cycles':>11} {'mismatches':>10} {'sim cycles/s':>12}"
    lines = [head, "-" * len(head)]
    for row in rows:
        line = (f"{row['name']:<34} {row['macs']:>14,} {row['cycles']:>12,} "
                f"{row['macs'] / (config.macs * row['cycles']):>11.1%}")
        if total_cycles:
            line += f" {row['cycles'] / total_cycles:>11.2%}"
        if sim:
            line += f" {row['rtl_cycles']:>11,} {row['mismatches']:>10,} {row['cycles_per_second']:>12,.0f}"
        lines.append(line)
    return "\n".join(lines)


def _parser():
    parser = OneLineErrorParser(prog="python tools/bench_engine.py", description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=224,
                        help="MobileNetV2 input resolution for the cycle-model table (default: %(default)s)")
    parser.add_argument("--model", type=Path,
                        help="take the table's layers from this ONNX model instead of the built-in MobileNetV2")
    parser.add_argument("--lanes", type=int, default=NPUConfig().lanes,
                        help="engine lanes: lanes x lanes MACs (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the random layer data (default: %(default)s)")
    parser.add_argument("--no-sim", action="store_true", help="skip the Icarus run (cycle model only)")
    return parser


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = NPUConfig(lanes=args.lanes)
        if config.lanes < 2:
            raise ValueError(f"the engine needs at least 2 lanes, not {config.lanes}")
    except ValueError as error:
        parser.error(str(error))
    if not 32 <= args.resolution <= 1023:
        parser.error(f"resolution must be an integer in [32, 1023], not {args.resolution}")
    if args.seed < 0:
        parser.error(f"seed must be a non-negative integer, not {args.seed}")
    if args.model is not None:
        try:
            layers = model_layers(args.model)
        except ValueError as error:
            parser.error(str(error).splitlines()[0])
        if not layers:
            parser.error(f"model {str(args.model)!r} has no layer the engine runs")
        title = f"{args.model.name}: engine layers"
    else:
        layers = mobilenet_v2_layers(args.resolution)
        title = f"MobileNetV2 {args.resolution}x{args.resolution}: 52 convolutions, 10 residual adds, pool, classifier"
    if not args.no_sim and (shutil.which("iverilog") is None or shutil.which("vvp") is None):
        parser.error("iverilog and vvp are needed for the RTL run (apt install iverilog), or pass --no-sim")

    print(f"engine: {config.lanes}x{config.lanes} = {config.macs} MACs")
    if not args.no_sim:
        specs = [(*spec, "plain") for spec in KIND_LAYERS]
        sim_config = fitted_config(specs, config)
        cases, images = random_layers(specs, sim_config, args.seed)
        results = simulate(cases, images, sim_config, BUILD)
        rows = []
        for case, result in zip(cases, results):
            model = layer_cycles(case.descriptor, sim_config)
            rows.append(dict(name=case.name, macs=case.descriptor.macs, cycles=model, rtl_cycles=result["cycles"],
                             mismatches=int((result["output"] != case.expected).sum()),
                             cycles_per_second=result["cycles"] / result["seconds"]))
        print("\nper layer kind: RTL in Icarus (cycles must equal the cycle model; outputs against the golden model)")
        print(_table(rows, sim_config, sim=True))
        total = sum(result["cycles"] for result in results) / sum(result["seconds"] for result in results)
        print(f"simulated {total:,.0f} cycles/s over these layers (Icarus, {sim_config.macs} MACs)")
        bad = [row["name"] for row in rows if row["rtl_cycles"] != row["cycles"] or row["mismatches"]]
        if bad:
            print(f"{parser.prog}: error: the RTL disagrees with the golden model on {', '.join(bad)}",
                  file=sys.stderr)
            return 1

    rows, totals = [], {"macs": 0, "cycles": 0}
    unbounded = unbounded_config(config)
    for name, kind, shape, cout, kernel, stride, padding in layers:
        descriptor = layer_descriptor(kind, shape, cout, config=unbounded, kernel=kernel, stride=stride,
                                      padding=padding, in_base=0, out_base=activation_words(shape, config))
        rows.append(dict(name=name[-34:], macs=descriptor.macs, cycles=layer_cycles(descriptor, unbounded)))
        totals["macs"] += descriptor.macs
        totals["cycles"] += rows[-1]["cycles"]
    print(f"\n{title} (cycle model)")
    print(_table(rows + [dict(name="total", **totals)], config, total_cycles=totals["cycles"]))
    by_kind = {}
    for (_, kind, *_), row in zip(layers, rows):
        entry = by_kind.setdefault(kind, {"macs": 0, "cycles": 0, "layers": 0})
        entry["macs"] += row["macs"]
        entry["cycles"] += row["cycles"]
        entry["layers"] += 1
    print("\nby kind")
    print(_table([dict(name=f"{kind} ({entry['layers']} layers)", macs=entry["macs"], cycles=entry["cycles"])
                  for kind, entry in by_kind.items()], config, total_cycles=totals["cycles"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
