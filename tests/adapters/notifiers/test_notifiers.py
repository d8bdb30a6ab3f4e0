"""Notifiers deliver to a real HTTP receiver on 127.0.0.1: Slack Block Kit within Slack's limits, the
Teams Adaptive Card shape, HMAC signatures with replay rejection, retries, and rollouts that are never
blocked or failed by a dead receiver."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rollwise.adapters.notifiers.delivery import (
    DeliveryLog,
    Notice,
    NoticeBoard,
    RetryPolicy,
    describe_metric,
)
from rollwise.adapters.notifiers.fanout import FanoutNotifier
from rollwise.adapters.notifiers.slack import (
    MAX_SECTION,
    SlackNotifier,
    slack_message,
)
from rollwise.adapters.notifiers.teams import TeamsNotifier
from rollwise.adapters.notifiers.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookNotifier,
    sign,
    verify_signature,
)
from rollwise.core.evidence import MetricEvidence, MetricParams, SideCounts, SloVerdict
from rollwise.core.model import Event, RolloutRecord, RouteState
from rollwise.simulate import Behaviour
from rollwise.spec.models import NotifySpec
from rollwise.wiring import build_notifier
from support.reports import Receiver, assert_within_slack_limits, canary_spec, run_rollout

FAST = RetryPolicy(attempts=4, base_s=0.01, cap_s=0.05, timeout_s=2.0)
BAD = Behaviour(error_rate=0.05)


@pytest.mark.timeout(60)
def test_slack_gets_stage_changes_and_one_rollback_message_naming_the_culprit(receiver: Receiver) -> None:
    notifier = SlackNotifier(receiver.url, policy=FAST)
    store, phase = run_rollout(canary_spec(), BAD, notifier=notifier)
    assert phase == "RolledBack"
    assert notifier.flush(10)
    messages = [r.json() for r in receiver.requests]
    # the 0% -> 5% stage change and the rollback; no message for continue verdicts or the decision itself
    assert len(messages) == 2, [m["text"] for m in messages]
    stage, rollback = messages
    for message in messages:
        assert_within_slack_limits(message)
    assert "0% → 5%" in stage["blocks"][0]["text"]["text"]
    assert "checkout" in stage["blocks"][0]["text"]["text"]
    rendered = json.dumps(rollback["blocks"], ensure_ascii=False)
    assert "rolled back" in rollback["blocks"][0]["text"]["text"]
    assert "Culprit metric: error-rate" in rendered
    decision = next(e for e in store.events("checkout") if e.type == "decision" and e.data["action"] == "rollback")
    culprit = next(m for m in decision.data["evidence"]["metrics"] if m["metric"] == "error-rate")
    bad, trials = int(culprit["canary"]["bad"]), int(culprit["canary"]["trials"])
    assert f"{bad} errors of {trials}" in rendered  # the canary's own numbers
    assert f"{culprit['threshold']:.4g}" in rendered  # and the bar the statistic crossed
    assert "rollwise report checkout" in rendered  # no reportUrl: how to render the report
    delivered = notifier.log.deliveries()
    assert [d.status for d in delivered] == ["delivered", "delivered"]
    assert all(d.attempts == 1 and d.response_code == 200 for d in delivered)


def _notice(**overrides: Any) -> Notice:
    event = Event(rollout="checkout", at=1_700_000_000.0, type="phase", message="m",
                  data={"phase": "RolledBack"})
    fields: dict[str, Any] = {"kind": "rolled-back", "rollout": "checkout", "service": "checkout",
                              "stable": "v1", "canary": "v2", "title": "t", "summary": "s", "event": event}
    fields.update(overrides)
    return Notice(**fields)


def test_slack_message_is_clipped_to_slack_limits() -> None:
    huge = "x" * 10_000
    metrics = tuple(describe_metric(MetricEvidence(metric=f"m{i}-{huge}", test="t", action="rollback",
                                                   canary=SideCounts(requests=10, errors=1),
                                                   baseline=SideCounts(requests=10, errors=0))) for i in range(80))
    notice = _notice(title="checkout " + huge, summary="<&>" + huge, why=huge, culprit=metrics[0], metrics=metrics,
                     service=huge, region=huge, report_hint=huge)
    message = slack_message(notice)
    assert_within_slack_limits(message)
    assert message["blocks"][0]["text"]["text"].endswith("…")
    assert "&lt;&amp;&gt;" in json.dumps(message)  # mrkdwn control characters escaped
    assert len(message["text"]) <= 3000
    clipped = slack_message(_notice(summary="&" * 2000))["blocks"][2]["text"]["text"]
    assert len(clipped) <= MAX_SECTION and clipped.endswith("&amp;…")  # never half an entity


@pytest.mark.timeout(60)
def test_teams_receives_an_adaptive_card_message(receiver: Receiver) -> None:
    notifier = TeamsNotifier(receiver.url, policy=FAST)
    _, phase = run_rollout(canary_spec(), BAD, notifier=notifier)
    assert phase == "RolledBack"
    assert notifier.flush(10)
    message = receiver.requests[-1].json()
    assert receiver.requests[-1].headers["content-type"] == "application/json"
    assert message["type"] == "message"
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert tuple(int(x) for x in card["version"].split(".")) >= (1, 4)
    assert card["body"] and all("type" in element for element in card["body"])
    facts = {f["title"]: f["value"] for el in card["body"] if el["type"] == "FactSet" for f in el["facts"]}
    assert facts["Versions"] == "v1 → v2"
    assert "error-rate" in json.dumps(card)


@pytest.mark.timeout(60)
def test_webhook_is_signed_and_replays_are_rejected(receiver: Receiver) -> None:
    secret = "s3cret"
    notifier = WebhookNotifier(receiver.url, secret=secret, policy=FAST)
    _, phase = run_rollout(canary_spec(), BAD, notifier=notifier)
    assert phase == "RolledBack"
    assert notifier.flush(10)
    request = receiver.requests[-1]
    timestamp = request.headers[TIMESTAMP_HEADER.lower()]
    signature = request.headers[SIGNATURE_HEADER.lower()]
    assert signature.startswith("sha256=") and len(signature) == len("sha256=") + 64
    assert verify_signature(secret, request.body, timestamp, signature)
    payload = request.json()
    assert payload["kind"] == "rolled-back" and payload["culprit"]["metric"] == "error-rate"
    assert request.headers["x-rollwise-delivery"] == payload["id"]
    # tampered body, wrong secret, garbage signature: rejected
    assert not verify_signature(secret, request.body + b" ", timestamp, signature)
    assert not verify_signature("other", request.body, timestamp, signature)
    assert not verify_signature(secret, request.body, timestamp, "sha256=" + "0" * 64)
    assert not verify_signature(secret, request.body, "not-a-time", signature)
    # replay window: the same request presented later than the tolerance is refused, inside it accepted
    ts = int(timestamp)
    assert verify_signature(secret, request.body, timestamp, signature, tolerance_s=300, now=ts + 299)
    assert not verify_signature(secret, request.body, timestamp, signature, tolerance_s=300, now=ts + 301)
    assert not verify_signature(secret, request.body, timestamp, signature, tolerance_s=300, now=ts - 301)
    # a re-signed request with a new timestamp carries a different signature over the same body
    assert sign(secret, request.body, ts + 1) != signature


@pytest.mark.timeout(60)
def test_a_500_is_retried_until_the_receiver_answers_200(receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    log = DeliveryLog()
    notifier = WebhookNotifier(receiver.url, secret="k", policy=FAST, log=log)
    _, phase = run_rollout(canary_spec(), BAD, notifier=notifier)
    assert phase == "RolledBack"
    assert notifier.flush(10)
    first = log.deliveries()[0]
    assert (first.status, first.attempts, first.response_code) == ("delivered", 3, 200)
    ids = [r.headers["x-rollwise-delivery"] for r in receiver.requests[:3]]
    assert len(set(ids)) == 1  # the same event three times, de-duplicable by the receiver
    for r in receiver.requests[:3]:  # every attempt is validly signed on its own
        assert verify_signature("k", r.body, r.headers["x-rollwise-timestamp"], r.headers["x-rollwise-signature"])


@pytest.mark.timeout(60)
def test_a_client_error_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses = [400]
    notifier = SlackNotifier(receiver.url, policy=FAST)
    run_rollout(canary_spec(), BAD, notifier=notifier)
    assert notifier.flush(10)
    first = notifier.log.deliveries()[0]
    assert (first.status, first.attempts, first.response_code) == ("failed", 1, 400)


@pytest.mark.timeout(120)
def test_a_dead_receiver_never_blocks_or_fails_a_rollout(closed_port_url: str, tmp_path: Any) -> None:
    spec = canary_spec()
    _, without = run_rollout(spec, BAD)
    good_store, good_without = run_rollout(spec, Behaviour(), seed=1)
    log = DeliveryLog(tmp_path / "deliveries.jsonl")
    notifier = FanoutNotifier([SlackNotifier(closed_port_url, log=log, policy=FAST),
                               TeamsNotifier(closed_port_url, log=log, policy=FAST),
                               WebhookNotifier(closed_port_url, secret="k", log=log, policy=FAST)])
    bad_store, with_dead = run_rollout(spec, BAD, notifier=notifier)
    good_store2, good_with_dead = run_rollout(spec, Behaviour(), notifier=notifier, seed=1)
    assert (with_dead, good_with_dead) == (without, good_without) == ("RolledBack", "Succeeded")
    assert [e.message for e in good_store2.events("checkout")] == [e.message for e in good_store.events("checkout")]
    assert notifier.flush(30)
    outcomes = log.deliveries()
    assert outcomes and all(d.status == "failed" and d.attempts == FAST.attempts for d in outcomes)
    assert all(d.response_code is None and "Connect" in (d.error or "") for d in outcomes)
    lines = (tmp_path / "deliveries.jsonl").read_text().splitlines()
    assert len(lines) == len(outcomes) and json.loads(lines[0])["status"] == "failed"
    notifier.close(1)


class Exploding:
    def notify(self, record: RolloutRecord, event: Event) -> None:
        raise RuntimeError("boom")


def test_fanout_contains_a_notifier_that_raises(receiver: Receiver) -> None:
    slack = SlackNotifier(receiver.url, policy=FAST)
    _, phase = run_rollout(canary_spec(), BAD, notifier=FanoutNotifier([Exploding(), slack]))
    assert phase == "RolledBack"
    assert slack.flush(10) and len(receiver.requests) == 2


def _record(**notify: str) -> RolloutRecord:
    spec = canary_spec()
    if notify:
        spec = spec.model_copy(update={"notify": NotifySpec(**notify)})
    return RolloutRecord(name=spec.name, spec=spec, created_at=0.0, updated_at=0.0, route=RouteState(stable="v1"))


def test_only_stage_changes_endings_and_bad_decisions_are_worth_a_message() -> None:
    board = NoticeBoard()
    record = _record()
    progressing = record.model_copy(update={"phase": "Progressing"})

    def ev(type_: str, **data: Any) -> Event:
        return Event(rollout="checkout", at=1.0, type=type_, message=type_, data=data)

    def kind(record: RolloutRecord, event: Event) -> str | None:
        notice = board.notice(record, event)
        return notice.kind if notice is not None else None

    paused = progressing.model_copy(update={"phase": "Paused"})
    succeeded = record.model_copy(update={"phase": "Succeeded"})
    assert kind(progressing, ev("decision", action="continue")) is None
    assert kind(progressing, ev("decision", action="expand")) is None
    assert kind(progressing, ev("step", kind="pause", step=1)) is None
    assert kind(progressing, ev("phase", phase="Progressing")) is None
    assert kind(progressing, ev("step", kind="setWeight", weight=10.0, previous_weight=5.0)) == "stage"
    assert kind(progressing, ev("decision", action="inconclusive")) == "decision"
    assert kind(paused, ev("decision", action="inconclusive")) is None  # the Paused phase event tells it
    assert kind(paused, ev("phase", phase="Paused")) == "paused"
    assert kind(succeeded, ev("phase", phase="Succeeded")) == "succeeded"
    assert kind(record, ev("command", command="undo")) == "undo"
    incident = board.notice(succeeded, ev("incident", incident=3, metric="errorRate", culprit="r:checkout:9"))
    assert incident is not None and incident.kind == "incident"
    assert incident.title.endswith("incident #3 on errorRate, culprit r:checkout:9")


def test_report_url_from_the_spec_is_linked() -> None:
    record = _record(reportUrl="https://rollwise.example/reports/{name}")
    board = NoticeBoard()
    notice = board.notice(record.model_copy(update={"phase": "RolledBack"}),
                          Event(rollout="checkout", at=1.0, type="phase", message="RolledBack: x",
                                data={"phase": "RolledBack"}))
    assert notice is not None and notice.report_url == "https://rollwise.example/reports/checkout"
    assert "<https://rollwise.example/reports/checkout|Open the report>" in json.dumps(slack_message(notice))


def test_wiring_builds_channels_from_env_and_from_each_spec(receiver: Receiver, tmp_path: Any) -> None:
    env = {"ROLLWISE_SLACK_WEBHOOK_URL": receiver.url + "/slack", "ROLLWISE_TEAMS_WEBHOOK_URL": receiver.url + "/teams",
           "ROLLWISE_WEBHOOK_URL": receiver.url + "/generic", "ROLLWISE_WEBHOOK_SECRET": "k"}
    notifier = build_notifier(env, log_path=tmp_path / "n.jsonl")
    assert isinstance(notifier, FanoutNotifier)
    assert sorted(type(n).__name__ for n in notifier.notifiers) == ["SlackNotifier", "TeamsNotifier", "WebhookNotifier"]
    record = _record(slack=receiver.url + "/spec-slack").model_copy(update={"phase": "Succeeded"})
    notifier.notify(record, Event(rollout="checkout", at=1.0, type="phase", message="Succeeded: ok",
                                  data={"phase": "Succeeded"}))
    assert notifier.flush(10)
    paths = sorted(r.path for r in receiver.wait_for(4))
    assert paths == ["/hook/generic", "/hook/slack", "/hook/spec-slack", "/hook/teams"]
    generic = next(r for r in receiver.requests if r.path == "/hook/generic")
    assert verify_signature("k", generic.body, generic.headers["x-rollwise-timestamp"],
                            generic.headers["x-rollwise-signature"])
    assert len((tmp_path / "n.jsonl").read_text().splitlines()) == 4
    notifier.close(1)
    assert build_notifier({}, log_path=tmp_path / "none.jsonl").notifiers == []  # type: ignore[attr-defined]


def test_a_metric_decided_by_its_slo_gate_alone_still_has_numbers() -> None:
    """A latency SLO can breach before the latency bar froze: no comparison yet, but the gate's counts
    are numbers a person can act on, so the metric can be named as the culprit (demo bad-canary)."""
    gate = SloVerdict(limit=0.01, higherIsWorse=True, alpha=0.005, bad=45, trials=366, lower=0.08, upper=0.17,
                      breached=True, met=False, rule="lower bound above the gate")
    result = MetricEvidence(metric="latency-p99", test="frozen-quantile", action="rollback",
                            params=MetricParams(slo=gate))
    line = describe_metric(result, "latency")
    assert line.has_numbers
    assert "12.3% (45 slow of 366) against the SLO's 1% gate" in line.text
    assert not describe_metric(result.model_copy(update={"params": MetricParams()}), "latency").has_numbers


def test_region_wave_moves_are_worth_a_message_with_their_reason() -> None:
    from rollwise.simulate import Behaviour, simulate
    from rollwise.spec import load_spec_text

    spec = load_spec_text("""
name: shop
service: shop
versions: {stable: {name: v1}, canary: {name: v2}}
traffic: {router: simulated}
strategy:
  canary:
    analysis:
      metrics: [{name: error-rate, type: errorRate, slo: "< 1%", maxIncrease: 0%, critical: true}]
    steps: [{setWeight: 20}, {pause: {duration: 30s}}, {setWeight: 50}]
    waves: [{name: one, regions: [a]}, {name: two, regions: [b]}]
    onFailure: hold
""")
    from rollwise.core.memory_store import MemoryStore

    store = MemoryStore()
    simulate(spec, canary_in={"b": Behaviour(error_rate=0.05)}, store=store, seed=1)
    record, board = store.get("shop"), NoticeBoard()
    notices = [n for e in store.events("shop") if e.type == "wave" if (n := board.notice(record, e)) is not None]
    assert [n.event.data["action"] for n in notices] == ["start", "promoted", "start", "held"]
    held = notices[-1]
    assert held.kind == "wave" and "two" in held.title and held.rule == "wave-held"
    assert held.culprit is not None and held.culprit.name == "error-rate"  # the regression that held it
    assert "wave 'two' failed" in json.dumps(slack_message(held))
