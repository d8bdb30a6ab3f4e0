"""Releasing AI agents: evaluation suites with repeated runs, graders, and the paired sequential test.

Pure: ``suite`` (the JSONL suite), ``graders`` (exact, regex, JSON Schema; command and LLM judge through
the protocols in ``protocols``), ``paired`` (the paired betting e-process), ``runner`` (an evaluation batch
for one stage look) and ``source`` (a ``MetricSource`` that adds the batch to each window). The HTTP
endpoints and the command runner are adapters (``adapters/agents/``); ``analysis/evaluation.py`` judges
the batches inside the sequential judge, so live metrics and evaluations share one alpha.
"""
