"""Releasing AI agents: evaluation suites with repeated runs, graders, and the paired sequential test.

Pure: ``suite`` (the JSONL suite), ``graders`` (exact, regex, JSON Schema; command and LLM judge through
the protocols in ``protocols``), ``paired`` (the paired betting e-process), ``runner`` (an evaluation batch
for one stage look) and ``source`` (a ``MetricSource`` that adds the batch to each window). The HTTP
endpoints and the command runner are adapters (``adapters/agents/``); ``analysis/evaluation.py`` judges
the batches inside the sequential judge, so live metrics and evaluations share one alpha.

An agent's memory versioned with the release is ``memory`` (the ``MemoryStore`` protocol, its idempotent
lifecycle, and the router wrapper that keeps it in step with the route; LanceDB in
``adapters/agents/lancedb_memory.py``) and ``cli`` (``rollwise memory list|diff|restore``).

Not here yet (issue 16, part 4): a real-model demo would be a ``demo/`` scenario whose agents are
``json-post`` or ``openai-chat`` services.
"""
