"""The command line about itself: ``onceflow --version`` and ``onceflow completion``.

Versions come from the installed packages' metadata (``importlib.metadata``), so asking
for them imports neither pyspark nor delta. Completion scripts are generated from the
parser itself by ``shtab``: a command or option added anywhere completes without more work.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onceflow.cli.common import EXIT_OK

if TYPE_CHECKING:
    from onceflow.cli.common import Commands

__all__ = ["SHELLS", "VersionAction", "register", "version_text"]

SHELLS = ("bash", "zsh")
#: The packages whose versions decide how a job runs, besides onceflow's own.
_ENGINE = ("pyspark", "delta-spark")


def version_text() -> str:
    """``onceflow X (pyspark Y, delta-spark Z, Python V)``; a package that is missing says
    so instead of failing."""
    engine = ", ".join(f"{name} {_installed(name)}" for name in _ENGINE)
    python = ".".join(str(part) for part in sys.version_info[:3])
    return f"onceflow {_installed('onceflow')} ({engine}, Python {python})"


def _installed(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


class VersionAction(argparse.Action):
    """``--version``: print ``version_text()`` and exit 0; computed only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", "print onceflow's, pyspark's and delta-spark's versions")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(version_text())
        parser.exit(EXIT_OK)


def register(commands: Commands) -> None:
    """Add completion."""
    completion = commands.add_parser(
        "completion",
        help='print a shell completion script: eval "$(onceflow completion bash)"',
    )
    completion.add_argument("shell", choices=SHELLS)
    completion.set_defaults(handler=_completion)


def _completion(args: argparse.Namespace) -> int:
    import shtab  # only here: no other command needs it

    from onceflow.cli import parser as whole  # the package that registered this command

    parser = whole()
    _complete_paths(parser, shtab.FILE)
    print(shtab.complete(parser, shell=args.shell), end="")
    return EXIT_OK


def _complete_paths(parser: argparse.ArgumentParser, files: object) -> None:
    """Every argument that takes a path (``type=Path``) completes file names, in every
    command; the others complete as shtab decides (choices, options)."""
    for action in parser._actions:
        if action.type is Path:
            action.complete = files  # type: ignore[attr-defined]
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _complete_paths(sub, files)
