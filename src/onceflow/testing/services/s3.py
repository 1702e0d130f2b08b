"""A local S3-compatible server (S3Proxy, filesystem backend), run from ``.jars/s3proxy``.

One HTTP endpoint on 127.0.0.1 and a free port, with AWS v2/v4 signatures checked against
one access key / secret key pair, so a wrong key is refused as real S3 refuses it. Objects
live as files under ``home/data`` (a bucket is a directory there), so they survive
``stop()`` then ``start()``: the port is chosen once, when the object is made, and a
restart serves the same endpoint with the same data. Readiness is the endpoint answering
an HTTP request, not a log line.

    with LocalS3(Path("/tmp/s3")) as s3:
        s3.create_bucket("lake")
        spark_conf = s3.s3a_conf()  # spark.hadoop.fs.s3a.* for a SparkSession builder
        print(s3.endpoint)
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from onceflow.testing.services.process import LocalService, ManagedProcess, free_port, java_command

__all__ = ["LocalS3"]

DEFAULT_JARS = Path(".jars/s3proxy")
#: Development credentials: the server is loopback-only and throwaway. Tests pass their own.
DEFAULT_ACCESS_KEY = "onceflow"
DEFAULT_SECRET_KEY = "onceflow-local-secret"  # noqa: S105 - a dev-only default, documented

# S3 bucket naming rules (lowercase, digits, '.', '-'; 3-63 chars). They also keep a name
# from escaping the data folder, since a bucket is a directory there.
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

# S3Proxy's jar carries no logback.xml, and logback without one logs at DEBUG (~700 Jetty
# lines for a start and two requests). Start-up and errors are what a failed test needs.
_LOGBACK = """\
<configuration>
  <appender name="out" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>[%d] %p %m [%c{30}]%n</pattern></encoder>
  </appender>
  <logger name="org.eclipse.jetty" level="WARN"/>
  <logger name="org.gaul.shaded.org.eclipse.jetty" level="WARN"/>
  <root level="INFO"><appender-ref ref="out"/></root>
</configuration>
"""


class LocalS3(LocalService):
    """Start, use and stop one local S3 endpoint. Also a context manager.

    Args:
        home: folder for the configuration, the log (``s3proxy.log``) and the data
            (``data/<bucket>/<key>``). Kept across ``stop()``/``start()``.
        jars: S3Proxy and its runtime dependencies (``make s3-jars``).
        access_key: the one identity the server accepts.
        secret_key: its secret; written only to ``home/s3proxy.properties`` (mode 0600),
            never to the command line, the log or ``state()``.
        heap: the JVM's ``-Xmx``.
    """

    def __init__(
        self,
        home: Path,
        jars: Path = DEFAULT_JARS,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        heap: str = "256m",
    ) -> None:
        self.home = home.resolve()
        self.jars = jars.resolve()
        self.access_key = access_key
        self._secret_key = secret_key
        self.heap = heap
        # chosen once: a restart must serve the same endpoint, which clients have cached
        self.port = free_port()
        self._process: ManagedProcess | None = None

    def __repr__(self) -> str:
        return f"LocalS3(endpoint={self.endpoint!r}, home={str(self.home)!r}, pid={self.pid})"

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``: the value for ``fs.s3a.endpoint``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def secret_key(self) -> str:
        """The secret key the server checks signatures against (do not log it)."""
        return self._secret_key

    @property
    def data(self) -> Path:
        """The filesystem backend's base folder: one directory per bucket."""
        return self.home / "data"

    @property
    def log(self) -> Path:
        return self.home / "s3proxy.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _write_config(self) -> Path:
        self.data.mkdir(parents=True, exist_ok=True)
        self.data.chmod(0o700)
        (self.home / "logback.xml").write_text(_LOGBACK)
        properties = {
            "s3proxy.endpoint": self.endpoint,  # its host part is the bind address
            "s3proxy.authorization": "aws-v2-or-v4",
            "s3proxy.identity": self.access_key,
            "s3proxy.credential": self._secret_key,
            "jclouds.provider": "filesystem",
            "jclouds.filesystem.basedir": str(self.data),
        }
        config = self.home / "s3proxy.properties"
        # 0600 before the secret goes in (fchmod too: O_CREAT keeps an old file's mode)
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("".join(f"{k}={_escape(v)}\n" for k, v in properties.items()))
        return config

    def start(self, timeout: float = 60.0) -> None:
        """Start the server; returns once the endpoint answers HTTP.

        Idempotent while running. After ``stop()`` it serves the same port and data again.

        Raises:
            ServiceError: SERVICE_START_FAILED when the jars are missing, the process exits
                or ``timeout`` passes first (e.g. the port was taken meanwhile).
        """
        if self._process is not None:
            return
        config = self._write_config()
        command = java_command(
            "s3proxy",
            self.jars,
            "org.gaul.s3proxy.Main",
            "--properties",
            str(config),
            heap=self.heap,
            options=[f"-Dlogback.configurationFile={self.home / 'logback.xml'}"],
            make_target="s3-jars",
        )
        process = ManagedProcess("s3proxy", command, self.log, cwd=self.home)
        process.start(self._answers, timeout=timeout)
        self._process = process

    def _answers(self) -> bool:
        # Unsigned, so S3Proxy answers 403 with an S3 XML error: that means Jetty is up and
        # the S3 handler bound. Refused/reset raises (not ready yet). The S3 markers guard
        # against some other HTTP server that grabbed the port while ours fails to bind.
        try:
            with urllib.request.urlopen(self.endpoint + "/", timeout=2) as answer:  # noqa: S310
                headers, body = answer.headers, answer.read()
        except urllib.error.HTTPError as error:
            headers, body = error.headers, error.read()
        return "x-amz-request-id" in headers and (b"<Error>" in body or b"<ListAll" in body)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL); the data stays in ``home/data``."""
        if self._process is not None:
            self._process.stop()
            self._process = None

    def create_bucket(self, name: str) -> Path:
        """Make sure bucket ``name`` exists and is private; return its folder.

        The filesystem backend treats each directory under its base folder as a bucket,
        so this is a ``mkdir``: it needs no signed request and works while the server is
        stopped.

        Raises:
            ValueError: ``name`` is not a valid S3 bucket name.
        """
        if not _BUCKET_NAME.match(name) or ".." in name:
            raise ValueError(f"'name' {name!r} is not a valid S3 bucket name")
        bucket = self.data / name
        bucket.mkdir(parents=True, exist_ok=True)
        # S3Proxy reads a bucket's ACL from the directory's mode: "others may read" means
        # public-read, and anyone could list it unsigned. 0700 is CreateBucket's private.
        bucket.chmod(0o700)
        return bucket

    def profile_env(self, bucket: str) -> dict[str, str]:
        """The variables ``conf/s3.yaml`` reads, for this server and ``bucket``."""
        return {
            "ONCEFLOW_S3_ENDPOINT": self.endpoint,
            "ONCEFLOW_S3_BUCKET": bucket,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self._secret_key,
        }

    def s3a_conf(self, prefix: str = "spark.hadoop.") -> dict[str, str]:
        """The S3A settings that reach this server (secret included: keep it out of logs).

        With the default prefix they are SparkSession builder keys; with ``prefix=""``
        they are Hadoop ``Configuration`` keys (e.g. for a running session's
        ``sparkContext._jsc.hadoopConfiguration()``). Jobs read them from ``conf/s3.yaml``.
        Nothing else is needed against S3Proxy: it returns MD5 ETags, honours
        ``If-None-Match: *`` and accepts the AWS SDK 2.35 default checksums.
        """
        conf = {
            "fs.s3a.endpoint": self.endpoint,
            "fs.s3a.endpoint.region": "us-east-1",
            "fs.s3a.path.style.access": "true",
            "fs.s3a.connection.ssl.enabled": "false",
            "fs.s3a.aws.credentials.provider": (
                "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
            ),
            "fs.s3a.access.key": self.access_key,
            "fs.s3a.secret.key": self._secret_key,
        }
        return {prefix + key: value for key, value in conf.items()}

    def state(self) -> dict[str, Any]:
        """What ``make s3-up`` records for ``s3-down`` and for users (no secret key)."""
        return {
            "pid": self.pid,
            "endpoint": self.endpoint,
            "port": self.port,
            "access_key": self.access_key,
            "home": str(self.home),
            "log": str(self.log),
        }


def _escape(value: str) -> str:
    """``value`` as java.util.Properties reads it back (backslash escapes, line breaks)."""
    escaped = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return "\\" + escaped if escaped[:1] in (" ", "\t") else escaped
