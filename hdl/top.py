"""Verilog of the NPU's top, the layer controller and its engine: ``python -m hdl.top generate -o npu.v [--images DIR]``.

Every field of :class:`golden.config.NPUConfig` is a command-line option with its default; a bad value is one line
on stderr and exit code 2, and no file is written. Without ``--images`` the memories start empty (zeros): the load
ports fill them, or benches build the top with ``golden.images`` images inline.

``--images DIR`` takes a quantizer output folder (``golden.images.write_images``: ``memory.json``, ``weights.hex``,
``bias.hex``, ``tables.hex``, ``descriptors.hex``) and its configuration (``memory.json``'s ``descriptor_config``; only
``--program-depth`` may be given besides, the descriptors do not depend on it). The weight, bias, table and
descriptor memories then load the folder's files with ``$readmemh``: the four files are copied beside the Verilog and named
without a folder, so a simulator runs from the Verilog's folder (yosys finds them beside the source). Amaranth has no
``$readmemh``, so the memories are generated empty, without Amaranth's word-by-word zeros, and get a zero loop and a
``$readmemh`` (:func:`to_verilog`, :func:`load_with_readmemh`); the activation banks and the counter memory get the
zero loop alone. The Verilog stays small and quick to build whatever the network and depths (amaranth#1522). A folder
that is not a quantizer output, hex words not as wide as the memories, or a network with more layers than
``program_depth`` is one line on stderr, exit code 2, nothing written.

It also prints a pre-synthesis estimate of the ECP5 resources (:func:`hdl.estimate.estimate_resources` of the design
elaborated for :data:`hdl.dsp.ECP5`: MULT18X18D, DP16KD, flip-flops, LUT4s to an order of magnitude).
"""

import contextlib
import dataclasses
import json
import re
import sys
from pathlib import Path

from amaranth.back import rtlil, verilog

from cli import OneLineErrorParser, add_config_arguments, config_from_args, write_file
from golden.config import NPUConfig
from hdl.controller import Controller
from hdl.dsp import ECP5
from hdl.estimate import estimate_resources

__all__ = ["IMAGE_FILES", "build_top", "to_verilog", "load_with_readmemh", "main"]

#: The files ``--images`` loads and where: ``(file, module path below the top ("" for the top), memory name)``.
IMAGE_FILES = (("weights.hex", "engine.weights.ram", "mem"), ("bias.hex", "engine.biases.ram", "mem"),
               ("tables.hex", "engine.tables.ram", "mem"), ("descriptors.hex", "descriptors", "mem"))


def build_top(config):
    """The top-level component for ``config``: the layer controller with its engine (``hdl/controller.py``), memories
    empty.

    Raises:
        ValueError: if ``config`` describes no engine (fewer than 2 lanes).
    """
    return Controller(config)


@contextlib.contextmanager
def _without_zero_init():
    """Amaranth 0.5's RTLIL emitter leaving out the initial contents of memories whose contents are all zero (its
    ``emit_memory`` writes them bit by bit, zeros included: minutes for a MobileNetV2-sized instance)."""
    emit = rtlil.ModuleEmitter.emit_memory

    def emit_memory(self, cell_idx, cell):
        if any(cell.init):
            emit(self, cell_idx, cell)

    rtlil.ModuleEmitter.emit_memory = emit_memory
    try:
        yield
    finally:
        rtlil.ModuleEmitter.emit_memory = emit


def _initial_block(name, width, depth, file=None):
    """An ``initial`` block writing zeros to every word of memory ``name``, then loading ``file`` if given."""
    label = re.sub(r"\W", "_", f"load_{file}" if file else f"zero_{name}")
    load = f"    $readmemh(\"{file}\", {name});\n" if file else ""
    return (f"  initial begin : {label}\n"
            f"    integer i;\n"
            f"    for (i = 0; i < {depth}; i = i + 1) {name}[i] = {width}'h0;\n"
            f"{load}"
            f"  end\n")


#: A memory declaration in Yosys' Verilog, with Amaranth's all-zero ``initial`` block if it has one.
_MEMORY = r"^  reg \[(\d+):0\] ({name}) \[(\d+):0\];\n(  initial begin\n(?:    \2\[\d+\] = \d+'h0+;\n)*  end\n)?"


def to_verilog(top, name, loads=()):
    """Verilog text of ``top`` (a module named ``name``) whose memories start at zero through a loop; those in
    ``loads`` then load their files (:func:`load_with_readmemh`).

    Amaranth writes a memory's initial contents word by word, zeros included (amaranth#1522); for the memories of a
    MobileNetV2-sized instance that takes minutes and millions of lines. Memories whose contents are all zero are
    converted without them here and get a loop instead; the others keep Amaranth's words.

    Returns:
        ``(text, {file: (width, depth)})`` as :func:`load_with_readmemh`.
    """
    with _without_zero_init():
        text = verilog.convert(top, name=name, emit_src=False)
    text, shapes = load_with_readmemh(text, name, loads)
    declaration = re.compile(_MEMORY.format(name=r"\w+") + "(?!  initial)", re.MULTILINE)
    text = declaration.sub(lambda match: match.group(0) + _initial_block(
        match[2], int(match[1]) + 1, int(match[3]) + 1), text)
    return text, shapes


def load_with_readmemh(text, top, loads):
    """Verilog ``text`` (of a top named ``top``) whose memories load files with ``$readmemh`` at time 0.

    ``loads`` are ``(file, module path, memory name)`` (:data:`IMAGE_FILES`). Each memory must be declared exactly
    once in its module (``reg [W-1:0] name [D-1:0];``), followed by nothing or by Amaranth's all-zero ``initial``
    block, which is replaced by a loop writing zeros and the ``$readmemh`` (words past the file's stay 0 in every
    simulator).

    Returns:
        ``(text, {file: (width, depth)})``: the new text and each memory's shape.
    Raises:
        ValueError: a module or memory not found once, or a memory with a non-zero initial value.
    """
    shapes = {}
    for file, path, name in loads:
        # Yosys may suffix any module of the path with ``$<n>`` (a name that its parent also uses).
        module = r"(?:\$\d+)?\.".join(map(re.escape, f"{top}.{path}".split("."))) if path else None
        header = rf"^module \\{module}(?:\$\d+)? \(" if module else rf"^module {re.escape(top)}\("
        starts = [match.start() for match in re.finditer(header, text, re.MULTILINE)]
        if len(starts) != 1:
            raise ValueError(f"{len(starts)} modules {top}.{path} in the Verilog, not 1")
        end = text.index("\nendmodule", starts[0]) + 1
        declaration = re.compile(_MEMORY.format(name=re.escape(name)), re.MULTILINE)
        found = list(declaration.finditer(text, starts[0], end))
        if len(found) != 1 or text.startswith("  initial", found[0].end()):
            raise ValueError(f"memory {name!r} of {top}.{path} not declared once with a zero initial value")
        match = found[0]
        width, depth = int(match[1]) + 1, int(match[3]) + 1
        shapes[file] = (width, depth)
        text = (text[:match.start()] + match.group(0).split("\n")[0] + "\n" + _initial_block(name, width, depth, file)
                + text[match.end():])
    return text, shapes


def _images_config(parser, args):
    """The configuration of the quantizer folder ``args.images`` (``--program-depth`` applied) and its hex files'
    lines; exits with one line unless it is a quantizer output folder that fits ``program_depth``."""
    folder = args.images
    defaults = NPUConfig()
    given = [field.name for field in dataclasses.fields(NPUConfig) if field.name != "program_depth"
             and getattr(args, field.name) != getattr(defaults, field.name)]
    if given:
        parser.error(f"--images takes the configuration from {folder}/memory.json: drop "
                     f"--{given[0].replace('_', '-')}")
    try:
        summary = json.loads((folder / "memory.json").read_text())
        config = NPUConfig(**dict(summary["descriptor_config"], program_depth=args.program_depth))
        lines = {file: (folder / file).read_text().split() for file, _, _ in IMAGE_FILES}
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as error:
        parser.exit(2, f"{parser.prog}: error: {str(folder)!r} is not a quantizer output folder "
                       f"(golden.images.write_images): {error}\n")
    layers = len(lines["descriptors.hex"])
    if not 0 < layers <= config.program_depth:
        parser.error(f"the network's {layers} engine layers do not fit program_depth {config.program_depth}")
    return config, lines


def _check_hex(parser, lines, shapes):
    """Exit with one line unless every hex file's words are as wide as its memory's and fit its depth."""
    for file, words in lines.items():
        width, depth = shapes[file]
        digits = -(-width // 4)
        bad = [word for word in words if len(word) != digits or not re.fullmatch(r"[0-9a-fA-F]+", word)
               or int(word, 16) >> width]
        if bad:
            parser.error(f"{file}: word {bad[0]!r} is not a {width}-bit word of {digits} hex digits, the memory's "
                         f"width")
        if len(words) > depth:
            parser.error(f"{file}: {len(words)} words exceed the memory's {depth}")


def _parser():
    parser = OneLineErrorParser(prog="python -m hdl.top", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser)
    generate = commands.add_parser("generate", help="write Verilog of the top for a configuration",
                                   description="Write Verilog (Verilog-2005, compiles in iverilog -g2012) of the top.")
    generate.add_argument("-o", "--output", required=True, type=Path, help="Verilog file to write")
    generate.add_argument("--name", default="npu", help="Verilog module name (default: %(default)s)")
    generate.add_argument("--images", type=Path, metavar="DIR",
                          help="a quantizer output folder: its configuration, its memories loaded with $readmemh "
                               "(the .hex files are copied beside the Verilog)")
    add_config_arguments(generate)
    return parser


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.images is None:
        config, lines = config_from_args(parser, args), {}
    else:
        config, lines = _images_config(parser, args)
    if not args.output.parent.is_dir():
        parser.exit(2, f"{parser.prog}: error: output directory {str(args.output.parent)!r} does not exist\n")
    try:
        top = build_top(config)
    except ValueError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    text, shapes = to_verilog(top, args.name, IMAGE_FILES if lines else ())
    if lines:
        _check_hex(parser, lines, shapes)
        for file in lines:
            target = args.output.parent / file
            if not (target.exists() and target.samefile(args.images / file)):
                write_file(target, (args.images / file).read_bytes())
    write_file(args.output, text.encode())
    print(f"wrote {args.output}{' and its .hex files' if lines else ''} ({config})")
    estimate = estimate_resources(rtlil.convert(top, name=args.name, platform=ECP5, emit_src=False))
    print(f"estimated for ECP5 (before synthesis): {estimate['MULT18X18D']:,} MULT18X18D, {estimate['DP16KD']:,} "
          f"DP16KD, {estimate['FF']:,} FF, ~{estimate['LUT4']:,} LUT4 (order of magnitude)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
