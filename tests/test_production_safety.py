"""What every way of running a job gets, not only ``make``: no crash injection from the
job file (nor from the environment: tests/test_observe.py's restart runs with
ONCEFLOW_CRASH set), and Spark listening on loopback only under the local profiles."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest

from onceflow.config import load_job
from onceflow.errors import ConfigError
from tests.conftest import ROOT

ONCEFLOW = str(Path(sys.executable).with_name("onceflow"))
JOB = str(ROOT / "jobs" / "payments.yaml")


def test_a_job_file_cannot_ask_for_a_crash() -> None:
    with pytest.raises(ConfigError) as caught:
        load_job(JOB, env="local", overrides=["faults.crash_point=after_write"])
    assert caught.value.error_class == "CONFIG_UNKNOWN_KEY"


_SESSION = """
import sys
from onceflow.config import load_job
from onceflow.session import build_session
spark = build_session(load_job(sys.argv[1], env=sys.argv[2]).spec)
spark.range(100).repartition(2).count()  # a job's worth: executors, shuffle, Python workers
spark.createDataFrame([(1,)], "x INT").rdd.map(lambda r: r).count()
print("ready", flush=True)
sys.stdin.read()
"""


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = {pid}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _listening(pids: set[int]) -> list[str]:
    """The addresses the processes ``pids`` listen on (TCP, IPv4 and IPv6)."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    addresses = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            hex_ip = fields[1].split(":")[0]
            raw = bytes.fromhex(hex_ip)
            # the kernel prints each 32-bit word in host (little-endian) order
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, width // 2, 4))
            addresses.append(str(ipaddress.ip_address(packed)))
    return addresses


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


@pytest.mark.parametrize("env", ["local", "test"])
def test_spark_listens_on_loopback_only_without_make(env: str) -> None:
    """Run directly (no SPARK_LOCAL_IP from the Makefile), the profile alone keeps the
    driver, its block manager and the Python workers on loopback."""
    environ = {k: v for k, v in os.environ.items() if k != "SPARK_LOCAL_IP"}
    child = subprocess.Popen(
        [sys.executable, "-c", _SESSION, JOB, env],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=environ,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
        addresses = _listening(_descendants(child.pid))
    finally:
        child.communicate(b"", timeout=60)
    assert addresses, "found no listening socket of the Spark driver"
    assert [a for a in addresses if not _loopback(a)] == []
