"""Typed errors and the one place they become a one-line message and exit code 1.

Library code raises `UserError` (or a subclass) with a message that names the file and
the problem; only the Click command boundary (`handle_errors`) turns it into output.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import click


class UserError(Exception):
    """Bad input or environment that the user can fix; shown as one line, exit code 1."""


class InputFileError(UserError):
    """A file the user gave us is missing or malformed."""

    def __init__(self, path, problem: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.line = line
        self.problem = problem


def existing_path(path, what: str, *, folder: bool):
    """`path` as a Path when it exists and is a folder (`folder=True`) or a file; else an InputFileError
    that says `<what> does not exist` / `<what> is a file, not a folder` / `<what> is a folder, not a file`."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, f"{what} does not exist")
    if folder and not path.is_dir():
        raise InputFileError(path, f"{what} is a file, not a folder")
    if not folder and not path.is_file():
        raise InputFileError(path, f"{what} is a folder, not a file" if path.is_dir() else f"{what} is not a file")
    return path


class ValidationError(UserError):
    """Two things that must agree (graphs, shapes, label maps) do not."""


class ToolMissingError(UserError):
    """An external tool (atc, ais_bench) is not installed here."""


def handle_errors(func):
    """Decorator for Click commands: a UserError becomes `error: <message>` and exit 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)

    return wrapper
