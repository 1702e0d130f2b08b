"""The onceflow package (and a job's own functions) as zips for ``spark-submit --py-files``
and ``addPyFile``, so executors can import them.

On a cluster the driver runs where ``spark-submit`` runs, but Python code that Spark sends to
executors (crash injection's partition function, for one) imports onceflow there, where it is
not installed. A zip of the package on ``--py-files`` is put first on the executors' Python
path. The executors' interpreter still needs onceflow's own dependencies (pydantic, PyYAML):
the same environment on every node, or a packed one shipped with ``spark.archives``.
"""

from __future__ import annotations

import importlib.util
import sys
import sysconfig
import zipfile
from importlib.metadata import version
from pathlib import Path

__all__ = ["module_zip", "package_zip"]

# zip entries carry a timestamp; a fixed one makes the same code give the same bytes
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def package_zip(out_dir: Path) -> Path:
    """Write ``out_dir/onceflow-<version>.zip`` holding the ``onceflow`` package; return its path.

    The zip holds the installed package's ``.py`` files (no bytecode, no data), under
    ``onceflow/``, so ``import onceflow`` works with the zip alone on ``sys.path``.
    """
    package = Path(__file__).resolve().parent
    return _zipped(package, out_dir / f"onceflow-{version('onceflow')}.zip")


def module_zip(module: str, out_dir: Path) -> Path | None:
    """Write ``out_dir/<top>.zip`` holding the top-level package (or single module) that
    ``module`` belongs to, for a job's own functions; return its path. None when it is
    installed in the environment (its site-packages, which every node must have anyway)
    or not found.
    """
    top = module.partition(".")[0]
    found = importlib.util.find_spec(top)
    if found is None or found.origin is None:
        return None
    origin = Path(found.origin).resolve()
    installed = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    if any(origin.is_relative_to(folder) for folder in installed) or top in sys.stdlib_module_names:
        return None
    root = origin.parent if found.submodule_search_locations else origin
    return _zipped(root, out_dir / f"{top}.zip")


def _zipped(root: Path, target: Path) -> Path:
    """``root`` (a package folder or one ``.py`` file) as the zip ``target``: its ``.py``
    files under the package's name, no bytecode, no data."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".zip.partial")  # a reader never sees half a zip
    files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
    base = root.parent
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for source in files:
            entry = zipfile.ZipInfo(source.relative_to(base).as_posix(), date_time=_FIXED_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, source.read_bytes())
    partial.replace(target)
    return target
