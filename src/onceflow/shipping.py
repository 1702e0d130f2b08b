"""The onceflow package as a zip for ``spark-submit --py-files``, so executors can import it.

On a cluster the driver runs where ``spark-submit`` runs, but Python code that Spark sends to
executors (crash injection's partition function, for one) imports onceflow there, where it is
not installed. A zip of the package on ``--py-files`` is put first on the executors' Python
path. The executors' interpreter still needs onceflow's own dependencies (pydantic, PyYAML):
the same environment on every node, or a packed one shipped with ``spark.archives``.
"""

from __future__ import annotations

import zipfile
from importlib.metadata import version
from pathlib import Path

__all__ = ["package_zip"]

# zip entries carry a timestamp; a fixed one makes the same code give the same bytes
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def package_zip(out_dir: Path) -> Path:
    """Write ``out_dir/onceflow-<version>.zip`` holding the ``onceflow`` package; return its path.

    The zip holds the installed package's ``.py`` files (no bytecode, no data), under
    ``onceflow/``, so ``import onceflow`` works with the zip alone on ``sys.path``.
    """
    package = Path(__file__).resolve().parent
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"onceflow-{version('onceflow')}.zip"
    partial = target.with_suffix(".zip.partial")  # a reader never sees half a zip
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for source in sorted(package.rglob("*.py")):
            name = Path("onceflow") / source.relative_to(package)
            entry = zipfile.ZipInfo(name.as_posix(), date_time=_FIXED_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, source.read_bytes())
    partial.replace(target)
    return target
