"""Releasing AI agents: evaluation suites with repeated runs, graders, and the paired sequential test.

Pure: ``suite`` (the JSONL suite), ``graders`` (exact, regex, JSON Schema; command and LLM judge through
the protocols in ``protocols``), ``paired`` (the paired betting e-process), ``runner`` (an evaluation batch
for one stage look) and ``source`` (a ``MetricSource`` that adds the batch to each window). The HTTP
endpoints and the command runner are adapters (``adapters/agents/``); ``analysis/evaluation.py`` judges
the batches inside the sequential judge, so live metrics and evaluations share one alpha.

An agent's memory versioned with the release is ``memory`` (the ``MemoryStore`` protocol, its idempotent
lifecycle, and the router wrapper that keeps it in step with the route; LanceDB in
``adapters/agents/lancedb_memory.py``) and ``cli`` (``rollwise memory list|diff|restore``).

The real-model demo (issue 16, part 4) is ``demo/agent/``: ``rollwise demo --scenario agent`` releases an
``openai-chat`` agent backed by SmolLM2-135M and rolls its worse prompt back on this package's evidence.
"""
