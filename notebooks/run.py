"""Execute notebooks headless, each in a kernel of this interpreter, with cwd = repo root.

    .venv/bin/python notebooks/run.py [NOTEBOOK ...] [--out DIR] [--timeout SECONDS]

With several notebooks they run at once, one process each (their JVMs start in parallel).
The committed notebooks are never written to: each executed copy, with its outputs, goes to
``--out`` (``state/notebooks/executed/``, git-ignored). A failing cell is printed with its
traceback and the exit status is 1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def execute(notebook: Path, out: Path, timeout: int) -> int:
    """Run ``notebook`` in a fresh kernel; write the executed copy into ``out``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    # the kernel spec "python3" from this venv, not one a user installed elsewhere: its
    # "python" is replaced by this interpreter (jupyter_client does that for the native kernel)
    os.environ["JUPYTER_PATH"] = str(Path(sys.prefix) / "share" / "jupyter")
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=timeout,  # per cell
        resources={"metadata": {"path": str(ROOT)}},  # the kernel's cwd
        extra_arguments=["--HistoryManager.enabled=False"],  # kernels at once share no db
    )
    status = 0
    try:
        client.execute()
    except CellExecutionError as exc:
        print(f"FAILED {notebook.name}:\n{exc}", file=sys.stderr)
        status = 1
    except Exception as exc:  # a timeout, a dead kernel: still report which notebook
        print(f"FAILED {notebook.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        status = 1
    out.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out / notebook.name)
    print(f"{'ok' if status == 0 else 'FAILED'}: {notebook.name} (executed copy: {out})")
    return status


def main(argv: list[str] | None = None) -> int:
    """Run the given notebooks (all of them by default); 0 if every one ran through."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, default=NOTEBOOKS)
    parser.add_argument("--out", type=Path, default=ROOT / "state" / "notebooks" / "executed")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    if len(args.notebooks) == 1:
        return execute(args.notebooks[0].resolve(), args.out, args.timeout)
    # one process per notebook: a kernel each, and no event loop shared between them
    options = ["--out", str(args.out), "--timeout", str(args.timeout)]
    processes = [
        subprocess.Popen([sys.executable, __file__, str(notebook), *options])  # noqa: S603
        for notebook in args.notebooks
    ]
    return max(process.wait() for process in processes)


if __name__ == "__main__":
    sys.exit(main())
