"""Bridges: rollwise's judge answering controllers teams already run (Argo Rollouts, Flagger).

Pure: ``contract.py`` reads what those controllers send into a ``BridgeRequest`` (two versions,
Prometheus and its PromQL, the analysis); ``judging.py`` adds one window to a session and judges all
of it. The HTTP routes are ``api/bridges.py``; Prometheus is read through
``adapters/metrics/prometheus.py`` and sessions kept in ``adapters/stores/sql_bridges.py``, both built
by ``wiring.py``.
"""
