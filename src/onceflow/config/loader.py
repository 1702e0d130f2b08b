"""Load a job: profiles and job file layered, environment interpolated, paths resolved,
validated once into a frozen ``JobSpec``.

Layer order, the later winning key by key::

    conf/base.yaml  <  conf/<env>.yaml  <  jobs/<job>.yaml  <  --set key.path=value

Profiles hold what differs between environments (Spark master and conf, ``storage.root``);
a job states what it does. Relative paths in the job (source, sinks, checkpoint) are joined
to ``storage.root``; a relative ``storage.root`` and ``spark.jars_dir`` are taken from the
project folder (the folder that holds ``conf/``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from onceflow.config.common import JOB_NAME_PATTERN
from onceflow.config.documents import Document, KeyPath, Origin, load_document
from onceflow.config.functions import check_functions
from onceflow.config.interpolation import interpolate_env
from onceflow.config.job import JobSpec, job_model
from onceflow.config.layering import apply_override, merge_documents
from onceflow.config.rules import check_guarantee_rules
from onceflow.config.secrets import check_secret_literals, is_secret_key
from onceflow.config.validation import to_config_errors
from onceflow.errors import ConfigError

__all__ = ["DEFAULT_QUARANTINE_FOLDER", "REDACTED", "LoadedJob", "find_conf_dir", "load_job"]

REDACTED = "***"
#: Where a job's quarantine table lives unless ``quality.quarantine`` says otherwise.
DEFAULT_QUARANTINE_FOLDER = "data/quarantine"
_JOB_NAME = re.compile(JOB_NAME_PATTERN)
_URI_SCHEME = ("hdfs:", "s3a:", "s3:", "file:", "abfss:", "gs:", "dbfs:")


@dataclass(frozen=True)
class LoadedJob:
    """A validated job and what is needed to explain it (layers, sensitive values)."""

    spec: JobSpec
    job_file: Path
    env: str | None
    layers: tuple[str, ...]
    project_dir: Path
    _merged: Mapping[str, Any]
    _sensitive: frozenset[KeyPath]
    _origins: Mapping[KeyPath, Origin] = field(default_factory=dict)

    def origin_of(self, path: KeyPath) -> Origin:
        """Where the value at ``path`` was written (the file and line, or ``--set``), or its
        nearest ancestor's: for errors found after loading (``onceflow.deep``)."""
        return Document({}, dict(self._origins), str(self.job_file)).origin_of(path)

    def redacted(self) -> dict[str, Any]:
        """The effective configuration, with every value the environment supplied as ``***``."""
        redacted: dict[str, Any] = _redact(self._merged, (), self._sensitive)
        return redacted

    def effective(self) -> dict[str, Any]:
        """Every key of the job, the defaults filled in, as the model holds it (paths
        resolved, each sink's ``mode`` the one it writes with), with the same values as
        ``redacted()`` shows as ``***``."""
        dumped = self.spec.model_dump(mode="json", by_alias=True)
        for sink, shown in zip(self.spec.sinks, dumped["sinks"], strict=True):
            shown["mode"] = self.spec.mode_of(sink).value
        effective: dict[str, Any] = _redact(dumped, (), self._sensitive)
        return effective

    def to_yaml(self, defaults: bool = False) -> str:
        """``redacted()`` as YAML, for ``onceflow validate --print``; ``defaults``:
        ``effective()`` instead (``--print --defaults``)."""
        shown = self.effective() if defaults else self.redacted()
        return yaml.safe_dump(shown, sort_keys=False)


def find_conf_dir(job_file: Path, conf_dir: Path | None = None) -> Path | None:
    """The profile folder: explicit, else ``$ONCEFLOW_CONF_DIR``, else ``conf/`` beside the
    job's folder (``jobs/x.yaml`` -> ``conf/``), else ``./conf``; None when there is none."""
    if conf_dir is not None:
        return conf_dir
    from_env = os.environ.get("ONCEFLOW_CONF_DIR")
    if from_env:
        return Path(from_env)
    for candidate in (job_file.resolve().parent.parent / "conf", Path.cwd() / "conf"):
        if candidate.is_dir():
            return candidate
    return None


def load_job(
    job_file: str | Path,
    env: str | None = None,
    overrides: Iterable[str] = (),
    conf_dir: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedJob:
    """Load, layer, interpolate, resolve and validate one job, without touching Spark.

    Args:
        job_file: the job's YAML file.
        env: a profile name, ``conf/<env>.yaml``, or several separated by commas
            (``test,hdfs``), layered left to right; each file must exist.
        overrides: ``key.path=value`` strings, applied last.
        conf_dir: the profile folder; found next to the job when omitted.
        environ: the variables ``${env:VAR}`` reads; ``os.environ`` when omitted.

    Raises:
        ConfigError: the first problem found, with the others in ``.others``.
    """
    job_path = Path(job_file)
    if job_path.is_dir():
        raise ConfigError("CONFIG_NOT_A_FILE", file=str(job_path), hint=_jobs_in(job_path))
    conf = find_conf_dir(job_path, Path(conf_dir) if conf_dir is not None else None)
    project_dir = (conf.parent if conf is not None else Path.cwd()).resolve()

    documents: list[Document] = []
    if conf is not None and (conf / "base.yaml").is_file():
        documents.append(load_document(conf / "base.yaml"))
    for name in env.split(",") if env else []:
        profile = conf / f"{name.strip()}.yaml" if conf is not None else None
        if profile is None or not profile.is_file():
            known = sorted(p.stem for p in conf.glob("*.yaml")) if conf is not None else []
            raise ConfigError(
                "CONFIG_UNKNOWN_ENV",
                env=name,
                conf_dir=str(conf) if conf is not None else "(no conf/ folder found)",
                known=", ".join(known) or "none",
            )
        documents.append(load_document(profile))
    documents.append(load_document(job_path))

    merged = merge_documents(documents)
    for position, override in enumerate(overrides, start=1):
        apply_override(merged, override, position)
    _raise_all(check_secret_literals(merged))  # before interpolation: what the user wrote
    sensitive = interpolate_env(merged, os.environ if environ is None else environ)
    _resolve_paths(merged.data, project_dir)

    model = job_model()  # source and sinks typed by every registered kind
    try:
        spec = model.model_validate(merged.data)
    except ValidationError as exc:
        _raise_all(to_config_errors(exc, model, merged, sensitive))
    _raise_all(check_guarantee_rules(spec, merged))
    _raise_all(check_functions(spec, merged, project_dir))
    return LoadedJob(
        spec=spec,
        job_file=job_path,
        env=env,
        layers=tuple(d.name for d in documents),
        project_dir=project_dir,
        _merged=merged.data,
        _sensitive=frozenset(sensitive),
        _origins=merged.origins,
    )


def _jobs_in(folder: Path) -> str:
    """For an error: the job files a folder holds, a few by name."""
    names = sorted(p.name for p in folder.glob("*.yaml"))
    if not names:
        return ""
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"; name one of the job files in it: {shown}"


def _raise_all(errors: list[ConfigError]) -> None:
    """Raise the first error, carrying the rest in ``others``; nothing when empty."""
    if errors:
        first = errors[0]
        first.others = errors[1:]
        raise first from None


def is_uri(path: str) -> bool:
    """True for ``scheme:...`` paths that must not be joined as local folders."""
    return path.startswith(_URI_SCHEME) or "://" in path


def join_path(root: str, path: str) -> str:
    """``path`` if absolute or a URI, else ``root/path`` (also for URI roots)."""
    if is_uri(path) or path.startswith("/"):
        return path
    if is_uri(root):
        return root.rstrip("/") + "/" + path
    return str((Path(root) / path).resolve())


def _resolve_paths(data: dict[str, Any], project_dir: Path) -> None:
    """Make every path in ``data`` absolute, in place; leaves wrong types to validation."""
    storage = data.get("storage")
    root = storage.get("root", ".") if isinstance(storage, dict) else "."
    if not isinstance(root, str):
        return
    root = join_path(str(project_dir), root)
    if isinstance(storage, dict):
        storage["root"] = root

    def resolve(holder: Any, key: str, base: str) -> None:
        if isinstance(holder, dict) and isinstance(holder.get(key), str):
            holder[key] = join_path(base, holder[key])

    resolve(data.get("source"), "path", root)
    join = data.get("join")
    resolve(join, "table", root)
    if isinstance(join, dict) and isinstance(join.get("stream"), dict):
        resolve(join["stream"].get("source"), "path", root)  # a second source, as the first
    resolve(data, "checkpoint", root)
    # every job accounts for its records, so every job has a quarantine table's path (a
    # name validation will refuse gets none: it is no folder name)
    name = data.get("name")
    named = isinstance(name, str) and _JOB_NAME.fullmatch(name) is not None
    if "quality" not in data and named:
        data["quality"] = {}
    quality = data.get("quality")
    if isinstance(quality, dict):
        if quality.get("quarantine") is None and named:
            quality["quarantine"] = f"{DEFAULT_QUARANTINE_FOLDER}/{name}"
        resolve(quality, "quarantine", root)
    sinks = data.get("sinks")
    for sink in sinks if isinstance(sinks, list) else []:
        resolve(sink, "path", root)
    resolve(data.get("spark"), "jars_dir", str(project_dir))


def _redact(value: Any, path: KeyPath, sensitive: frozenset[KeyPath]) -> Any:
    if path in sensitive or (is_secret_key(path) and value is not None):
        return REDACTED
    if isinstance(value, Mapping):
        return {k: _redact(v, (*path, k), sensitive) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, (*path, i), sensitive) for i, v in enumerate(value)]
    return value
