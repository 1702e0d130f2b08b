"""A deliberately broken onceflow, for proving that the prove harness catches one.

Put this folder on PYTHONPATH and every onceflow job in that process claims its guarantee
but writes unguarded, as at-least-once does: a replay after a crash writes the batch again.
Python imports ``sitecustomize`` at start-up, before onceflow's runner binds the writer.
"""

from __future__ import annotations

import dataclasses

import onceflow.guarantees as guarantees
from onceflow.config import Guarantee

_real_writer = guarantees.guarded_writer


def _unguarded_writer(sinks, settings):  # type: ignore[no-untyped-def]
    return _real_writer(sinks, dataclasses.replace(settings, guarantee=Guarantee.AT_LEAST_ONCE))


guarantees.guarded_writer = _unguarded_writer
