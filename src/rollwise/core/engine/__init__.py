"""The rollout engine: spec -> engine -> actions; observations -> judge -> verdict -> engine.

- ``reconciler``: ``RolloutEngine`` (tick, commit, apply the route, events, begin and retire).
- ``observation``: collect windows, ask the judge, baseline history, metrics-backend errors.
- ``gates``: whether a judged stage may end (rollback, runs, no data, the stage cap).
- ``strategy``: the ``Strategy`` protocol and the registry keyed by ``strategy.kind``;
  one module per strategy: ``canary`` (steps dispatched by ``STEP_HANDLERS``), ``blue_green``, ``shadow``.
- ``commands``: a person's promote/pause/resume/abort/approve/undo and their refusals.
- ``transitions``: moves they share (finish, pause, full promotion, crediting a person).
"""

from rollwise.core.engine.change import CommandError
from rollwise.core.engine.commands import COMMANDS
from rollwise.core.engine.reconciler import JudgeFactory, RolloutEngine

__all__ = ["COMMANDS", "CommandError", "JudgeFactory", "RolloutEngine"]
