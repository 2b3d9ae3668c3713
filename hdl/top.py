"""Verilog of the NPU's top, the convolution engine: ``python -m hdl.top generate -o npu.v [--lanes 8 ...]``.

Every field of :class:`golden.config.NPUConfig` is a command-line option with its default; a bad value is one line
on stderr and exit code 2, and no file is written. The engine's memories start empty (zeros); benches and ROM builds
initialise them from ``golden.images`` images.
"""

import sys
from pathlib import Path

from amaranth.back import verilog

from cli import OneLineErrorParser, add_config_arguments, config_from_args, write_file
from hdl.engine import Engine

__all__ = ["build_top", "main"]


def build_top(config):
    """The top-level component for ``config``: the convolution engine (``hdl/engine.py``) with empty memories.

    Raises:
        ValueError: if ``config`` describes no engine (fewer than 2 lanes).
    """
    return Engine(config)


def _parser():
    parser = OneLineErrorParser(prog="python -m hdl.top", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser)
    generate = commands.add_parser("generate", help="write Verilog of the top for a configuration",
                                   description="Write Verilog (Verilog-2005, compiles in iverilog -g2012) of the top.")
    generate.add_argument("-o", "--output", required=True, type=Path, help="Verilog file to write")
    generate.add_argument("--name", default="npu", help="Verilog module name (default: %(default)s)")
    add_config_arguments(generate)
    return parser


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    config = config_from_args(parser, args)
    try:
        top = build_top(config)
    except ValueError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    text = verilog.convert(top, name=args.name, emit_src=False)
    if not args.output.parent.is_dir():
        parser.exit(2, f"{parser.prog}: error: output directory {str(args.output.parent)!r} does not exist\n")
    write_file(args.output, text.encode())
    print(f"wrote {args.output} ({config})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
