"""The job's Python functions (``transform.python``, ``transform.batch_python``): found and
checked when the job loads, before Spark starts, and imported when the query starts.

A reference is ``package.module:function``. Its module is imported from the Python path,
then from the job's project folder (the folder that holds ``conf/``, else the working
directory), which is appended to ``sys.path`` for that: installed packages win over a
folder of the same name.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from onceflow.config.documents import Document, format_key_path
from onceflow.config.job import JobSpec
from onceflow.errors import ConfigError, first_line

__all__ = ["check_functions", "import_function"]

#: Each function key and how many positional arguments its function is called with.
_FUNCTION_KEYS = {"python": 1, "batch_python": 2}


def import_function(reference: str) -> Callable[..., Any]:
    """The function ``package.module:function`` names, imported (the project folder is on
    ``sys.path`` once its job was loaded).

    Raises:
        ValueError: its module cannot be imported (the reason names why), it has no such
            name, or the name is not callable.
    """
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


def check_functions(spec: JobSpec, document: Document, project_dir: Path) -> list[ConfigError]:
    """A CONFIG_BAD_FUNCTION error for each function key whose function cannot be found or
    cannot take the arguments onceflow calls it with, naming file, line and key.

    The module is found and read, not run: loading a job runs none of its code (and so
    starts no Spark, which the module may import); what it does when it runs is found
    out when the query starts (TRANSFORM_FAILED).
    """
    if str(project_dir) not in sys.path:
        sys.path.append(str(project_dir))
    errors = []
    for key, arity in _FUNCTION_KEYS.items():
        reference = getattr(spec.transform, key)
        if reference is None:
            continue
        try:
            _find(reference, arity)
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


def _find(reference: str, arity: int) -> None:
    """Raise ValueError unless ``reference``'s module defines its function at the top, able
    to take ``arity`` positional arguments (a name bound otherwise is taken on trust)."""
    module_name, _, name = reference.partition(":")
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        found = None
    if found is None or found.origin is None or not found.origin.endswith(".py"):
        raise ValueError(f"no module {module_name} on the Python path or in the project folder")
    tree = ast.parse(Path(found.origin).read_text(encoding="utf-8"), filename=found.origin)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            _check_arity(node.args, arity)
            return
        if name in _bound_names(node):
            return
    raise ValueError(f"module {module_name} ({found.origin}) defines no '{name}'")


def _bound_names(node: ast.stmt) -> set[str]:
    """The names a top-level statement other than a ``def`` binds."""
    if isinstance(node, ast.Assign):
        return {t.id for t in node.targets if isinstance(t, ast.Name)}
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return {node.target.id}
    if isinstance(node, ast.ImportFrom | ast.Import):
        return {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return set()


def _check_arity(arguments: ast.arguments, arity: int) -> None:
    positional = [*arguments.posonlyargs, *arguments.args]
    required = len(positional) - len(arguments.defaults)
    keyword_only = [a for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True)
                    if d is None]  # fmt: skip
    fits = required <= arity and (arguments.vararg is not None or arity <= len(positional))
    if not fits or keyword_only:
        raise ValueError(f"it must take {arity} positional argument(s)")
