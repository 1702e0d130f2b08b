"""``make lab``: JupyterLab starts on loopback with the notebooks open, in the venv's kernel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from onceflow.testing.services import free_port
from tests.conftest import ROOT

pytestmark = [pytest.mark.slow]

TOKEN = "lab-test-token"  # noqa: S105 - this test's own throwaway server


def ask(port: int, path: str) -> dict[str, object]:
    url = f"http://127.0.0.1:{port}{path}?token={TOKEN}"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


def kernel_processes(runtime_dir: Path) -> dict[int, str]:
    """pid -> argv[0] of the kernels whose connection file is in ``runtime_dir`` (Jupyter
    starts each kernel in a session of its own, so they are found by that file)."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0") if proc.name.isdigit() else []
        except OSError:
            continue
        joined = b" ".join(argv)
        if b"ipykernel_launcher" in joined and str(runtime_dir).encode() in joined:
            found[int(proc.name)] = argv[0].decode()
    return found


def test_make_lab_serves_the_notebooks_in_the_venv_kernel(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "JUPYTER_TOKEN": TOKEN, "JUPYTER_RUNTIME_DIR": str(tmp_path)}
    log = (tmp_path / "lab.log").open("wb")
    lab = subprocess.Popen(
        ["make", "lab", f"LAB_PORT={port}"], cwd=ROOT, env=env, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        contents = None
        deadline = time.monotonic() + 120
        while contents is None and time.monotonic() < deadline and lab.poll() is None:
            try:
                contents = ask(port, "/api/contents/")
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        assert contents is not None, (tmp_path / "lab.log").read_text()[-3000:]
        listed = {entry["name"] for entry in contents["content"]}  # type: ignore[index, union-attr]
        assert {p.name for p in (ROOT / "notebooks").glob("*.ipynb")} <= listed
        assert ask(port, "/api/kernelspecs")["default"] == "python3"
        started = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/kernels", data=b'{"name": "python3"}', method="POST",
            headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(started, timeout=30):  # noqa: S310
            pass
        deadline = time.monotonic() + 30
        while not kernel_processes(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert set(kernel_processes(tmp_path).values()) == {str(ROOT / ".venv/bin/python")}
    finally:
        stop(lab)  # the server shuts its kernels down; one that outlived it goes too
        for pid in kernel_processes(tmp_path):
            os.kill(pid, signal.SIGKILL)
        log.close()


def stop(group: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (make, jupyter, its kernels), SIGKILL what outlives 30 s."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, None)):
        try:
            os.killpg(group.pid, sig)
        except ProcessLookupError:
            break
        try:
            group.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
