"""Releasing AI agents: evaluation suites with repeated runs, graders, and the paired sequential test.

Pure: ``suite`` (the JSONL suite), ``graders`` (exact, regex, JSON Schema; command and LLM judge through
the protocols in ``protocols``), ``paired`` (the paired betting e-process), ``runner`` (an evaluation batch
for one stage look) and ``source`` (a ``MetricSource`` that adds the batch to each window). The HTTP
endpoints and the command runner are adapters (``adapters/agents/``); ``analysis/evaluation.py`` judges
the batches inside the sequential judge, so live metrics and evaluations share one alpha.

Not here yet (issue 16, parts 3 and 4): an agent's memory versioned with the release would be one more
protocol in ``protocols`` (tag, branch, restore, apply) with its LanceDB implementation in
``adapters/agents/``, driven by the rollout's begin/rollback/promote like the router; a real-model demo
would be a ``demo/`` scenario whose agents are ``json-post`` or ``openai-chat`` services.
"""
