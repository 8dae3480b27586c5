"""Faults inside the policy engine: counted, logged once per kind, never raised to the host agent.

``ENGINE_FAULTS`` is the module-level counter every enforcement point of the process shares. Kinds:
``policy_load`` (the policy file could not be loaded), ``decide`` (evaluation or recording before the
tool ran), ``approval_handler`` (the handler raised or answered garbage), ``notify`` (a review, halt or
breach notice could not be delivered), ``after`` (recording or cost accounting after the tool ran).
"""

from __future__ import annotations

import logging

from govtrace.instrumentation.faults import FaultCounter

logger = logging.getLogger("govtrace.policy")


ENGINE_FAULTS = FaultCounter(logger, "policy engine", "ENGINE_FAULTS")
