"""A deliberately broken onceflow, for proving that the prove harness catches one.

Put this folder on PYTHONPATH and every onceflow job in that process claims its guarantee
but writes unguarded, as at-least-once does: a replay after a crash writes the batch again.
Python imports ``sitecustomize`` at start-up, before onceflow's runner binds the policy.
"""

from __future__ import annotations

import onceflow.guarantees as guarantees
from onceflow.config import Guarantee

_real_policy_for = guarantees.policy_for


def _unguarded_policy(guarantee, claims=None):  # type: ignore[no-untyped-def]
    return _real_policy_for(Guarantee.AT_LEAST_ONCE)


guarantees.policy_for = _unguarded_policy
