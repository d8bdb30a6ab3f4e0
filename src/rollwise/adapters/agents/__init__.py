"""Agent endpoints (one module per protocol) and the command grader's runner; built by ``wiring.py``."""
