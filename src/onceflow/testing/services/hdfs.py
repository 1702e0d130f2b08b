"""A single-node HDFS 3.5 (one NameNode, one DataNode), run from the jars in ``.jars/hdfs``.

Both daemons listen on 127.0.0.1 only, on ports chosen once per ``LocalHdfs``: a ``stop()``
then ``start()`` serves the same ``uri`` with the same files, because the NameNode is
formatted only the first time its ``home`` is used. Configuration, metadata, blocks and the
two daemons' logs all live in ``home``. Readiness is the NameNode's own JMX answering "out of
safe mode, one live DataNode with space", not a log line.

    with LocalHdfs(Path("/tmp/hdfs")) as hdfs:
        spark.range(3).write.format("delta").save(f"{hdfs.uri}/tables/t")
        hdfs.stop_namenode()  # an outage as a client sees it; the DataNode waits
        hdfs.start()          # the same URI again, files intact

The Spark side needs no extra jar and no setting: pyspark's shaded hadoop-client speaks
``hdfs://``. The ``hdfs`` profile (``conf/hdfs.yaml``) bounds how long a client waits on a
NameNode that is up but does not answer.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from onceflow.errors import ServiceError
from onceflow.testing.services.process import LocalService, ManagedProcess, free_port, java_command

__all__ = ["LocalHdfs"]

DEFAULT_JARS = Path(".jars/hdfs")
NAMENODE_MAIN = "org.apache.hadoop.hdfs.server.namenode.NameNode"
DATANODE_MAIN = "org.apache.hadoop.hdfs.server.datanode.DataNode"

# Hadoop's launch scripts pass these on Java 17 (HADOOP-19310); a plain `java` must too, or
# the daemons fail on reflective access into java.base.
_ADD_OPENS = [
    f"--add-opens=java.base/{package}=ALL-UNNAMED"
    for package in (
        "java.lang",
        "java.lang.reflect",
        "java.io",
        "java.net",
        "java.util",
        "java.util.concurrent",
        "sun.nio.ch",
    )
]

# hadoop-common ships reload4j (log4j 1.x API) with its slf4j binding: a log4j 1 properties
# file is what the daemons read. Everything goes to stderr, which ManagedProcess files.
_LOG4J = """\
log4j.rootLogger=INFO,console
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.target=System.err
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=%d{ISO8601} %p %c{1}: %m%n
# the start-up banner holds the whole classpath on one line, which would fill a log tail
log4j.appender.console.filter.1=org.apache.log4j.varia.StringMatchFilter
log4j.appender.console.filter.1.StringToMatch=STARTUP_MSG:
log4j.appender.console.filter.1.AcceptOnMatch=false
# one line per RPC, block and audited call: noise for a dev cluster
log4j.logger.org.apache.hadoop.hdfs.server.namenode.FSNamesystem.audit=WARN
log4j.logger.org.apache.hadoop.hdfs.StateChange=WARN
log4j.logger.BlockStateChange=WARN
log4j.logger.org.apache.hadoop.hdfs.server.datanode.DataNode.clienttrace=WARN
# a thousand "Added DIR lock" lines at every DataNode start
log4j.logger.org.apache.hadoop.hdfs.server.datanode.fsdataset.impl.FsDatasetImpl=WARN
log4j.logger.org.apache.hadoop.util.NativeCodeLoader=ERROR
"""


@dataclass
class HdfsPorts:
    namenode_rpc: int
    namenode_http: int
    datanode_data: int
    datanode_http: int
    datanode_ipc: int


class LocalHdfs(LocalService):
    """Start, use and stop one local NameNode and DataNode. Also a context manager.

    Contract: ``uri`` never changes for the life of the object, and data written before a
    ``stop()`` is there after the next ``start()``. The ports are reserved by nothing
    between runs: another process could take one while HDFS is down, and the next
    ``start()`` then fails with SERVICE_START_FAILED.
    """

    def __init__(self, home: Path, jars: Path = DEFAULT_JARS, heap: str = "256m") -> None:
        self.home = home.resolve()
        self.jars = jars.resolve()
        self.heap = heap
        self.ports = HdfsPorts(free_port(), free_port(), free_port(), free_port(), free_port())
        self._namenode: ManagedProcess | None = None
        self._datanode: ManagedProcess | None = None

    @property
    def uri(self) -> str:
        """``hdfs://127.0.0.1:PORT``, the NameNode's RPC address (``fs.defaultFS``)."""
        return f"hdfs://127.0.0.1:{self.ports.namenode_rpc}"

    @property
    def web(self) -> str:
        """The NameNode's HTTP address: web UI, ``/jmx`` and WebHDFS (``/webhdfs/v1``)."""
        return f"http://127.0.0.1:{self.ports.namenode_http}"

    @property
    def conf_dir(self) -> Path:
        return self.home / "conf"

    @property
    def namenode_log(self) -> Path:
        return self.home / "logs" / "namenode.log"

    @property
    def datanode_log(self) -> Path:
        return self.home / "logs" / "datanode.log"

    @property
    def pid(self) -> int | None:
        """The NameNode's pid (the daemon that ``uri`` names); ``state()`` has both."""
        return self._namenode.pid if self._namenode is not None else None

    @property
    def datanode_pid(self) -> int | None:
        return self._datanode.pid if self._datanode is not None else None

    def _java(self, main: str, *args: str) -> list[str]:
        options = [
            *_ADD_OPENS,
            f"-Dlog4j.configuration=file:{self.conf_dir / 'log4j.properties'}",
            f"-Dhadoop.log.dir={self.home / 'logs'}",
            # as Hadoop's scripts do: its RPC and host checks expect IPv4 addresses
            "-Djava.net.preferIPv4Stack=true",
        ]
        return java_command(
            "hdfs",
            self.jars,
            main,
            *args,
            heap=self.heap,
            options=options,
            classpath_first=[self.conf_dir],  # core-site.xml and hdfs-site.xml are resources
        )

    def _write_config(self) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        p = self.ports
        core = {
            "fs.defaultFS": self.uri,
            # else scratch space lands in /tmp/hadoop-$USER, shared with any other cluster
            "hadoop.tmp.dir": str(self.home / "tmp"),
        }
        hdfs = {
            "dfs.namenode.rpc-address": f"127.0.0.1:{p.namenode_rpc}",
            "dfs.namenode.http-address": f"127.0.0.1:{p.namenode_http}",
            "dfs.datanode.address": f"127.0.0.1:{p.datanode_data}",
            "dfs.datanode.http.address": f"127.0.0.1:{p.datanode_http}",
            "dfs.datanode.ipc.address": f"127.0.0.1:{p.datanode_ipc}",
            # the name WebHDFS redirects to: the machine's hostname need not be loopback
            "dfs.datanode.hostname": "127.0.0.1",
            "dfs.namenode.name.dir": (self.home / "name").as_uri(),
            "dfs.datanode.data.dir": (self.home / "data").as_uri(),
            "dfs.replication": "1",
            "dfs.permissions.enabled": "false",
            "dfs.namenode.datanode.registration.ip-hostname-check": "false",
            # leave safe mode as soon as the blocks are reported, not 30 s later
            "dfs.namenode.safemode.extension": "0",
        }
        (self.conf_dir / "core-site.xml").write_text(_site_xml(core))
        (self.conf_dir / "hdfs-site.xml").write_text(_site_xml(hdfs))
        (self.conf_dir / "log4j.properties").write_text(_LOG4J)

    def _format_once(self) -> None:
        """Format the NameNode unless ``home`` already holds a namespace."""
        if (self.home / "name" / "current" / "VERSION").exists():
            return
        result = subprocess.run(  # noqa: S603 - our own fixed command
            self._java(NAMENODE_MAIN, "-format", "-force", "-nonInteractive"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise ServiceError(
                "SERVICE_START_FAILED",
                service="hdfs namenode format",
                timeout=120,
                log="(stderr)",
                tail=(result.stdout + result.stderr)[-3000:],
            )

    def start(self, timeout: float = 90.0) -> None:
        """Start whichever daemon is not running; returns once HDFS takes writes.

        The first start formats the NameNode. Ready means the NameNode answers, is out of
        safe mode and counts at least one live DataNode with free space.

        Raises:
            ServiceError: SERVICE_START_FAILED when a daemon exits or ``timeout`` passes
                first; both daemons are stopped then.
        """
        deadline = time.monotonic() + timeout
        self._write_config()
        try:
            self._format_once()
            if self._namenode is None:
                # with the DataNode down a restarted NameNode stays in safe mode until the
                # DataNode reports its blocks: wait here only for the NameNode to answer
                ready = self._ready if self._datanode is not None else self._namenode_answers
                self._namenode = ManagedProcess(
                    "hdfs namenode",
                    self._java(NAMENODE_MAIN),
                    self.namenode_log,
                    cwd=self.home,
                )
                self._namenode.start(ready, timeout=max(deadline - time.monotonic(), 1.0))
            if self._datanode is None:
                self._datanode = ManagedProcess(
                    "hdfs datanode",
                    self._java(DATANODE_MAIN),
                    self.datanode_log,
                    cwd=self.home,
                )
                self._datanode.start(self._ready, timeout=max(deadline - time.monotonic(), 1.0))
        except BaseException:  # a failed start, a ^C: leave no daemon half-started
            self.stop()
            raise

    def stop(self) -> None:
        """Stop both daemons (the DataNode first); files stay in ``home``."""
        if self._datanode is not None:
            self._datanode.stop()
            self._datanode = None
        self.stop_namenode()

    def stop_namenode(self) -> None:
        """Stop the NameNode only: clients fail as in a real outage; ``start()`` restarts it.

        The DataNode keeps running and re-registers once the NameNode is back.
        """
        if self._namenode is not None:
            self._namenode.stop()
            self._namenode = None

    def jmx(self, bean: str) -> dict[str, Any]:
        """The attributes of one NameNode JMX bean, e.g. ``FSNamesystemState``."""
        url = f"{self.web}/jmx?qry=Hadoop:service=NameNode,name={bean}"
        # no proxy: a developer's http_proxy must not see (or break) loopback calls
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=5) as response:
            beans = json.load(response)["beans"]
        if not beans:
            raise LookupError(f"no JMX bean {bean} yet")
        return dict(beans[0])

    def _namenode_answers(self) -> bool:
        return "FSState" in self.jmx("FSNamesystemState")

    def _ready(self) -> bool:
        state = self.jmx("FSNamesystemState")
        return (
            state.get("FSState") == "Operational"  # "safeMode" until blocks are reported
            and int(state.get("NumLiveDataNodes", 0)) >= 1
            # a DataNode counts as live at registration, before its first storage report
            and int(state.get("CapacityRemaining", 0)) > 0
        )

    def state(self) -> dict[str, Any]:
        """What ``make hdfs-up`` records for ``hdfs-down`` and for users: URI, ports, pids."""
        return {
            "pid": self.pid,  # the NameNode's
            "datanode_pids": [self.datanode_pid] if self.datanode_pid else [],
            "uri": self.uri,
            "web": self.web,
            "ports": asdict(self.ports),
            "home": str(self.home),
            "conf_dir": str(self.conf_dir),
            "logs": {"namenode": str(self.namenode_log), "datanode": str(self.datanode_log)},
        }


def _site_xml(properties: dict[str, str]) -> str:
    """A Hadoop ``*-site.xml`` holding ``properties``."""
    body = "".join(
        f"  <property><name>{escape(k)}</name><value>{escape(v)}</value></property>\n"
        for k, v in properties.items()
    )
    return f'<?xml version="1.0"?>\n<configuration>\n{body}</configuration>\n'
