"""The job's Python functions (``transform.python``, ``transform.batch_python``): found and
checked when the job loads, before Spark starts.

A reference is ``package.module:function``. Its module is imported from the Python path,
then from the job's project folder (the folder that holds ``conf/``, else the working
directory), which is appended to ``sys.path`` for that: installed packages win over a
folder of the same name.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from onceflow.config.documents import Document, format_key_path
from onceflow.config.job import JobSpec
from onceflow.errors import ConfigError, first_line

__all__ = ["check_functions", "import_function"]


def import_function(reference: str, project_dir: Path | None = None) -> Callable[..., Any]:
    """The function ``package.module:function`` names.

    Raises:
        ValueError: its module cannot be imported (the reason names why), it has no such
            name, or the name is not callable.
    """
    if project_dir is not None and str(project_dir) not in sys.path:
        sys.path.append(str(project_dir))
    module_name, _, name = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ValueError(f"importing {module_name} failed: {first_line(exc)}") from exc
    function = getattr(module, name, None)
    if function is None:
        raise ValueError(f"module {module_name} ({module.__file__}) has no '{name}'")
    if not callable(function):
        raise ValueError(f"{name} in {module_name} is a {type(function).__name__}, not a function")
    return function  # type: ignore[no-any-return]


#: Each function key and how many positional arguments its function is called with.
_FUNCTION_KEYS = {"python": 1, "batch_python": 2}


def check_functions(spec: JobSpec, document: Document, project_dir: Path) -> list[ConfigError]:
    """A CONFIG_BAD_FUNCTION error for each function key whose function cannot be imported
    or cannot take the arguments onceflow calls it with, naming file, line and key."""
    errors = []
    for key, arity in _FUNCTION_KEYS.items():
        reference = getattr(spec.transform, key)
        if reference is None:
            continue
        try:
            _check_arity(import_function(reference, project_dir), arity)
        except ValueError as exc:
            path = ("transform", key)
            origin = document.origin_of(path)
            errors.append(
                ConfigError(
                    "CONFIG_BAD_FUNCTION",
                    file=origin.file,
                    line=origin.line,
                    key=format_key_path(path),
                    reference=reference,
                    reason=str(exc),
                )
            )
    return errors


def _check_arity(function: Callable[..., Any], arity: int) -> None:
    try:
        inspect.signature(function).bind(*range(arity))
    except TypeError as exc:
        raise ValueError(f"it must take {arity} argument(s): {exc}") from None
    except ValueError:  # a builtin without a signature: found out when called
        pass
