"""Behavioural drift and anomaly detection per agent (``govtrace drift``; docs/drift.md).

One job per module, in the order data flows:

- ``features``: task behaviour and what each task touched, by SQL through a Reader;
- ``novelty``: what a task touched that the agent's baseline never (or rarely) did;
- ``detector``: baselines (seeded IsolationForest, calibrated threshold, drift chart), scores, alerts
  that name the features that moved;
- ``sequential``: the MEWMA drift chart over a stream of tasks;
- ``store``: the drift side file (baselines, scores, events);
- ``jobs`` and ``report``: what ``fit``, ``score`` and ``report`` do; ``commands``: the CLI;
- ``replay``, ``evaluate``, ``odds``: recorded agent runs as OTLP, and the evaluation;
- ``bench``: ``govtrace bench drift``.
"""
