"""The control plane's operations, each one a store change plus its audit row.

The API's routes and the local CLI (``LocalControl``) stay thin: they authenticate, then call one
method here. Every successful write appends an audit entry with the actor, what the rollout looked
like before and after (phase, weights, step), and the reason. The controller thread, not these
methods, moves traffic: a command only records intent.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import yaml
from pydantic_core import to_jsonable_python

from rollwise.control.principal import Principal
from rollwise.core.clock import SystemClock
from rollwise.core.engine import CommandError, RolloutEngine
from rollwise.core.model import RolloutRecord
from rollwise.core.protocols import AuditLog, ConflictError, NotFoundError, Store, WatchStore
from rollwise.learning.plan import plan_for
from rollwise.spec import SpecError, SpecProblem, load_spec_text
from rollwise.spec.models import RolloutSpec
from rollwise.spec.secrets import keep_redacted, redact_spec_dict

if TYPE_CHECKING:
    from rollwise.learning.risk import RiskAssessment

MAX_SPEC_BYTES = 1 << 20


def state_of(record: RolloutRecord | None) -> dict[str, Any] | None:
    """The part of a rollout people ask about after the fact: where traffic went and why."""
    if record is None:
        return None
    return {
        "phase": str(record.phase),
        "stable_weight": record.route.stable_weight,
        "canary_weight": record.route.canary_weight,
        "mirror_percent": record.route.mirror_percent,
        "step": record.step_index,
        "stage": record.stage_index,
        "paused_reason": record.paused_reason,
        "revision": record.revision,
    }


def spec_json(spec: RolloutSpec) -> dict[str, Any]:
    """The spec as readers (API, dashboard, audit log) see it: literal secrets redacted."""
    # Python mode: the JSON serializer rounds durations for humans ("1.5s" -> "2s").
    dumped: dict[str, Any] = to_jsonable_python(spec.model_dump(mode="python", exclude_none=True))
    return redact_spec_dict(dumped)


def parse_spec_body(body: bytes, source: str) -> RolloutSpec:
    """A spec from a request body, YAML or JSON, with every problem as ``SOURCE:LINE: path: message``.

    What the spec may make the server do (files, URLs, processes) is ``ControlPlane.admit``'s job.
    """
    if len(body) > MAX_SPEC_BYTES:
        raise SpecError([SpecProblem(source, 1, "(body)", f"larger than {MAX_SPEC_BYTES} bytes")])
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([SpecProblem(source, 1, "(body)", f"not UTF-8: {exc.reason}")]) from None
    if "\x00" in text:
        raise SpecError([SpecProblem(source, 1 + text[: text.index("\x00")].count("\n"), "(body)",
                                     "contains a NUL character")])
    if not text.strip():
        raise SpecError([SpecProblem(source, 1, "(body)", "empty: send the rollout spec as YAML or JSON")])
    return _load_yaml_or_json(text, source)


def _load_yaml_or_json(text: str, source: str) -> RolloutSpec:
    try:
        return load_spec_text(text, source)
    except SpecError as exc:
        if not any(p.path == "(yaml)" for p in exc.problems):
            raise
        # Valid JSON that YAML refuses (tabs as indentation) still deserves its field-level errors.
        try:
            data = json.loads(text)
        except ValueError:
            raise exc from None
        return load_spec_text(json.dumps(data, indent=2), source)


def _line_of_path(text: str, path: tuple[str, ...]) -> int:
    try:
        node: Any = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return 1
    line = 1
    for part in path:
        if not isinstance(node, yaml.MappingNode):
            break
        for key, value in node.value:
            if key.value == part:
                node, line = value, key.start_mark.line + 1
                break
        else:
            break
    return line


class ReleaseHeld(CommandError):
    """A release refused because its service is not healthy now (an open incident); ``--force`` overrides."""


@dataclass(frozen=True)
class ChangeRisk:
    """A change scored before its rollout starts: the assessment and which repository/revisions."""

    assessment: RiskAssessment
    change: dict[str, str]


class Admission(Protocol):
    """What specs may make the server do (``api/policy.SpecPolicy`` for specs arriving over the API)."""

    def refusals(self, spec: RolloutSpec) -> list[tuple[tuple[str, ...], str]]:
        """Every (field path, reason) of ``spec`` reaching outside what the operator allowed."""
        ...


class AdmitAll:
    """The operator at the CLI: whoever can write the store may name any file, URL or process."""

    def refusals(self, spec: RolloutSpec) -> list[tuple[tuple[str, ...], str]]:
        return []


@dataclass
class ControlPlane:
    store: Store
    audit: AuditLog
    policy: Admission = field(default_factory=AdmitAll)
    watch: WatchStore | None = None  # the watch's incidents (``wiring.open_watch`` of the store when None)

    def engine(self) -> RolloutEngine:
        from rollwise.wiring import open_releases  # a rollout a person ends teaches the next one too

        return RolloutEngine(store=self.store, clock=SystemClock(), releases=open_releases(self.store))

    def get(self, name: str) -> RolloutRecord:
        if not name or "\x00" in name or len(name) > 255:
            raise NotFoundError(name)
        return self.store.get(name)

    def admit(self, spec: RolloutSpec, body: bytes, source: str, who: Principal, action: str,
              reason: str = "") -> None:
        """Refuse (``SpecError``, audited as ``<action>.refused``) a spec reaching past the allow-lists."""
        refusals = self.policy.refusals(spec)
        if not refusals:
            return
        text = body.decode("utf-8")
        problems = [SpecProblem(source, _line_of_path(text, where), ".".join(where), why) for where, why in refusals]
        self.audit.append(actor=who.actor, role=who.role.name, action=f"{action}.refused", target=spec.name,
                          after={"outcome": "refused", "status": 422,
                                 "problems": [{"field": p.path, "reason": p.message} for p in problems]},
                          reason=reason)
        raise SpecError(problems)

    def keep_secrets(self, name: str, spec: RolloutSpec) -> RolloutSpec:
        """``spec`` with redacted placeholders (as a GET shows them) replaced by the secrets they stand for."""
        if spec.notify is None:
            return spec
        current = self.get(name).spec.notify
        merged, _unknown = keep_redacted(spec.notify.model_dump(exclude_none=True),
                                         current.model_dump(exclude_none=True) if current else None)
        # Placeholders that match no current secret stay as they are: ``admit`` refuses them.
        return spec.model_copy(update={"notify": type(spec.notify).model_validate(merged)})

    def start(self, spec: RolloutSpec, who: Principal, reason: str, commit_time: float | None,
              force: bool = False, risk: ChangeRisk | None = None) -> RolloutRecord:
        """Create the rollout, unless its service is held (``release_hold``; ``force`` overrides). With
        ``risk`` (a scored change) the plan is fitted to the risk when the spec asks
        (``analysis.adaptive.risk``), and the score, lane and reason are a ``plan`` event."""
        try:
            before = self.store.get(spec.name)
        except NotFoundError:
            before = None
        held = self.release_hold(spec, who, reason, force)
        plan = None
        if risk is not None:
            spec, plan = plan_for(spec, risk.assessment, risk.change)
        record = self.engine().start(spec, actor=who.actor, commit_time=commit_time, plan=plan)
        after = {**(state_of(record) or {}), "spec": spec_json(spec), **({"forced_over": held} if held else {})}
        self.audit.append(actor=who.actor, role=who.audit_role, action="rollout.start", target=spec.name,
                          before=state_of(before), after=after, reason=reason)
        return record

    def release_hold(self, spec: RolloutSpec, who: Principal, reason: str, force: bool) -> list[dict[str, Any]]:
        """Refuse (``ReleaseHeld``, audited) a release of a service the watch finds unhealthy now: an open
        incident means its stable version is anomalous. With ``force`` the start goes on; what it overrode
        is returned for the audit row."""
        if self.watch is None:
            from rollwise.wiring import open_watch

            self.watch = open_watch(self.store)
        open_now = self.watch.incidents(service=spec.service, open_only=True)
        if not open_now:
            return []
        held = [{"incident": i.id, "metric": i.metric, "onset": i.onset,
                 "culprit": (i.culprit or {}).get("id")} for i in open_now]
        if force:
            return held
        first = open_now[0]
        why = (f"held: service {spec.service} has open incident #{first.id} ({first.metric} anomalous since "
               f"{time.strftime('%H:%M:%S', time.gmtime(first.onset))} UTC); resolve it or start with --force")
        self.audit.append(actor=who.actor, role=who.audit_role, action="rollout.start.held", target=spec.name,
                          after={"outcome": "held", "incidents": held}, reason=reason)
        raise ReleaseHeld(why)

    def command(self, name: str, command: str, who: Principal, reason: str, full: bool = False) -> RolloutRecord:
        before = self.get(name)
        record = self.engine().command(name, command, actor=who.actor, reason=reason, full=full)
        after = state_of(record) or {}
        if command == "promote":
            after["full"] = full
        self.audit.append(actor=who.actor, role=who.audit_role, action=f"rollout.{command}", target=name,
                          before=state_of(before), after=after, reason=reason)
        return record

    def update_spec(self, name: str, spec: RolloutSpec, who: Principal, reason: str) -> RolloutRecord:
        for _ in range(5):
            before = self.get(name)
            try:
                record = self.engine().update_spec(name, spec, actor=who.actor, reason=reason)
            except ConflictError:
                continue
            self.audit.append(actor=who.actor, role=who.audit_role, action="rollout.update", target=name,
                              before={"spec": spec_json(before.spec)}, after={"spec": spec_json(spec)},
                              reason=reason)
            return record
        raise ConflictError(f"rollout {name!r} kept changing; try again")

    def push_kpi(self, name: str, version: str, metric: str, value: float, at: float | None,
                 who: Principal) -> float:
        record = self.get(name)
        if version not in (record.stable_version, record.canary_version):
            raise ValueError(f"version: {version!r} is neither {record.stable_version!r} (stable) nor "
                             f"{record.canary_version!r} (canary) of rollout {name!r}")
        when = at if at is not None else time.time()
        self.store.push_kpi(name, version, metric, value, when)
        # KPI pushes are high-volume telemetry, not control: they are not written to the audit log.
        return when
