"""Experiments: A/B tests on a flag's variants or on header/cookie routes, read with statistics that
stay valid however often they are read.

Pure parts (no I/O, a clock passed in): ``stats`` (estimates from sufficient statistics, relative lift,
fixed-horizon intervals, Bonferroni), ``sequential`` (anytime-valid confidence sequences), ``cuped``
(pre-experiment covariates), ``srm`` (sequential sample-ratio mismatch), ``model`` (an experiment's
definition) and ``readout`` (the decision from a store's per-variant statistics). The store lives in
``adapters/stores/sql_experiments.py``, the routes in ``api/experiments.py``, the CLI in ``cli.py``.
"""
