"""Sinks: where a micro-batch is written. One folder per kind: its ``__init__`` declares
the kind (spec, modes, what it guards, what it refuses; no Spark), the modules beside it
write. Each states what a replay of a batch does to it. ``base.build_sink`` builds a job's
sinks by their kinds (``onceflow.config.kinds``)."""
