"""What every command of the toolkit shares: one-line errors, option types, atomic outputs, NPUConfig options.

Commands (``tools/*.py``, ``python -m hdl.top``) build their parser from :class:`OneLineErrorParser`, so a bad
argument is one line on stderr and exit code 2; they write their outputs through :func:`atomic_path`,
:func:`write_file` and :func:`atomic_folder`, so an output is either the old one or the complete new one, never half
written. Nothing here imports Amaranth or the engine: a command that only parses flags (the torch training scripts)
loads none of it.
"""

import argparse
import contextlib
import dataclasses
import os
import shutil
import tempfile

from golden.config import NPUConfig

__all__ = ["OneLineErrorParser", "comma_list", "int_at_least", "require_positive", "atomic_path", "write_file",
           "atomic_folder", "add_config_arguments", "config_from_args"]


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr with exit code 2 (no usage block).

    The line is ``PROG: error: MESSAGE``, or ``error: MESSAGE`` with ``prog_in_errors=False``.
    """

    def __init__(self, *args, prog_in_errors=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.prog_in_errors = prog_in_errors

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n" if self.prog_in_errors else f"error: {message}\n")


def comma_list(kind, choices=None, *, none=False):
    """An option type: a comma-separated list of distinct ``kind`` values, each one of ``choices`` if given.

    With ``none``, the word ``none`` is accepted as such and returned as the string ``"none"``.
    """
    def parse(text):
        if none and text == "none":
            return "none"
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"empty list {text!r}")
        try:
            values = [kind(item) for item in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a comma-separated list of {kind.__name__}: {text!r}") from None
        for value in values:
            if choices is not None and value not in choices:
                raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(map(str, choices))}")
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"repeated value in {text!r}")
        return values
    return parse


def int_at_least(low, what):
    """An option type: an integer of at least ``low``; else ``must be a WHAT integer, not 'TEXT'``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"must be a {what} integer, not {text!r}")
        return value
    return parse


def require_positive(parser, args, *names, zero_ok=()):
    """Exit through ``parser.error`` if an integer option of ``names`` (``dest`` names) is below 1.

    An option in ``zero_ok`` may be 0; one that is ``None`` (not given, no default) passes.
    """
    for name in names:
        value = getattr(args, name)
        if value is not None and value < (0 if name in zero_ok else 1):
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, not {value}")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path to write ``path``'s new content to; it is renamed onto ``path`` on success.

    The temporary file lies in a hidden folder beside ``path`` (on the same file system, so the rename is atomic),
    which is removed whatever happens: ``path`` is never half written, and a failure leaves it as it was. ``path``'s
    folder is created if missing.
    """
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    folder = tempfile.mkdtemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.tmp-")
    try:
        temporary = os.path.join(folder, os.path.basename(path))
        yield temporary
        os.replace(temporary, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_file(path, data):
    """Write the bytes ``data`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as temporary, open(temporary, "wb") as f:
        f.write(data)


@contextlib.contextmanager
def atomic_folder(path):
    """Yield a new empty folder to fill; on success it replaces the folder ``path`` by renames only.

    An existing ``path`` is renamed aside, the new folder renamed onto ``path``, then the old one removed; on an
    exception the new folder is removed and ``path`` stays as it was. ``path``'s parent is created if missing.
    """
    path = os.path.abspath(path)
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(dir=parent, prefix=f".{name}.tmp-")
    try:
        yield temporary
        if os.path.exists(path):
            old = tempfile.mkdtemp(dir=parent, prefix=f".{name}.old-")
            os.rmdir(old)
            os.rename(path, old)
            os.rename(temporary, path)
            shutil.rmtree(old)
        else:
            os.rename(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


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
