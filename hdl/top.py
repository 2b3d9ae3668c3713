"""Verilog of the NPU's top, the convolution engine: ``python -m hdl.top generate -o npu.v [--lanes 8 ...]``.

Every field of :class:`golden.config.NPUConfig` is a command-line option with its default; a bad value is one line
on stderr and exit code 2, and no file is written. The engine's memories start empty (zeros); benches and ROM builds
initialise them from ``golden.memory`` images.
"""

import argparse
import dataclasses
import sys
from pathlib import Path

from amaranth.back import verilog

from golden.config import NPUConfig
from hdl.engine import Engine

__all__ = ["build_top", "OneLineErrorParser", "add_config_arguments", "config_from_args", "main"]


def build_top(config):
    """The top-level component for ``config``: the convolution engine (``hdl/engine.py``) with empty memories.

    Raises:
        ValueError: if ``config`` describes no engine (fewer than 2 lanes).
    """
    return Engine(config)


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr with exit code 2 (no usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser():
    parser = OneLineErrorParser(prog="python -m hdl.top", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser)
    generate = commands.add_parser("generate", help="write Verilog of the top for a configuration",
                                   description="Write Verilog (Verilog-2005, compiles in iverilog -g2012) of the top.")
    generate.add_argument("-o", "--output", required=True, type=Path, help="Verilog file to write")
    generate.add_argument("--name", default="npu", help="Verilog module name (default: %(default)s)")
    add_config_arguments(generate)
    return parser


def add_config_arguments(parser):
    """Add one ``--field-name`` option per :class:`NPUConfig` field, with the dataclass default."""
    docs = _field_docs()
    for field in dataclasses.fields(NPUConfig):
        parser.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, type=int, default=field.default,
                            help=f"{docs.get(field.name, '')} (default: %(default)s)")


def config_from_args(parser, args):
    """The :class:`NPUConfig` of options added by :func:`add_config_arguments`; a bad value exits with code 2."""
    try:
        return NPUConfig(**{field.name: getattr(args, field.name) for field in dataclasses.fields(NPUConfig)})
    except ValueError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")


def _field_docs():
    """First sentence of each parameter's description in NPUConfig's docstring."""
    docs, current = {}, None
    for line in NPUConfig.__doc__.splitlines():
        stripped = line.strip()
        if " : " in stripped:
            current = stripped.split(" : ")[0]
        elif current and stripped and current not in docs:
            docs[current] = stripped.split(". ")[0].rstrip(".").replace("%", "%%")
    return docs


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
    temporary = args.output.with_name(args.output.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(args.output)
    print(f"wrote {args.output} ({config})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
