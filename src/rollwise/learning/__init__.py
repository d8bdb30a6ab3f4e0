"""What rollwise learns from past releases: the pure half of the learning agent.

Each finished release teaches the next. This package holds the parts that do no I/O and take any
clock from their caller: change features and the risk learner (``features``, ``learner``), the
chronological backtest that says how far a learner's score can be trusted (``table``,
``evaluation``), the plans that follow a change's risk (``plan``), simulated change histories
with known risk factors (``simulated``), and priors the judge fits from past releases. Reading a
repository, a CSV file or the store happens at the edges (``adapters/repos/``, the CLI) and is
handed in as values.
The judge's prior (``priors``) is fitted once when a rollout begins, from what its ``ReleaseHistory``
store kept, so the false-rollback guarantee holds.
"""
