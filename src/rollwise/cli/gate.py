"""``rollwise rollout start --wait`` as a CI/CD gate: its exit codes, a JUnit XML and a Markdown summary.

A pipeline step needs one number that says what happened, and a report its CI shows next to the
job: JUnit XML (every CI renders it as tests) and Markdown (GitHub's ``$GITHUB_STEP_SUMMARY``,
GitLab's job summary). Both are built from the rollout's summary and its event log, so they say
what ``rollwise explain`` says: each stage's verdict per metric, with the numbers behind it.

Exit codes (documented in ``rollwise rollout start --help`` and docs/ci.md):
    0  promoted (Succeeded)
    3  rolled back or aborted (the pipeline should fail)
    4  paused for a person (approval gate, hold, a person's pause): someone must act
    5  timed out (``--timeout``) while the rollout was still running
Other codes: 1 an error (store, server, token), 2 bad input (an invalid spec or option).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rollwise.core.evidence import DecisionRecord, MetricEvidence, decision_of
from rollwise.core.model import RUN_START

PROMOTED = 0
ROLLED_BACK = 3
PAUSED_FOR_PERSON = 4
TIMED_OUT = 5

EXIT_CODES_HELP = (
    "Exit codes with --wait: 0 promoted; 3 rolled back or aborted; 4 paused for a person "
    "(approval, hold); 5 --timeout reached while still running; 1 error; 2 bad input."
)


def exit_code(phase: str) -> int:
    """What a pipeline step returns for the phase the rollout stood in when watching stopped."""
    if phase == "Succeeded":
        return PROMOTED
    if phase in ("RolledBack", "Aborted"):
        return ROLLED_BACK
    if phase == "Paused":
        return PAUSED_FOR_PERSON
    return TIMED_OUT


OUTCOME_WORDS = {PROMOTED: "promoted", ROLLED_BACK: "rolled back", PAUSED_FOR_PERSON: "paused for a person",
                 TIMED_OUT: "timed out"}


@dataclass
class MetricCase:
    """One metric's last verdict within one stage: a JUnit test case."""

    stage: int
    weight: float | None
    metric: MetricEvidence
    decision: DecisionRecord
    failed: bool

    @property
    def name(self) -> str:
        weight = f" at {self.weight:g}%" if self.weight is not None else ""
        return f"stage {self.stage}{weight}: {self.metric.metric}"

    def numbers(self) -> str:
        """The counts and the statistic behind the verdict, in one line."""
        m = self.metric
        parts = []
        for side_name, side in (("canary", m.canary), ("baseline", m.baseline)):
            if side.trials is not None:
                parts.append(f"{side_name} {_num(side.bad)}/{_num(side.trials)} bad")
            elif side.requests is not None:
                parts.append(f"{side_name} {_num(side.errors)} errors/{_num(side.requests)} requests")
        if m.statistic is not None:
            parts.append(f"statistic {_num(m.statistic)} vs threshold {_num(m.threshold)}")
        if m.interval:
            parts.append("interval [" + ", ".join(_num(x) for x in m.interval) + "]")
        return "; ".join(parts)


@dataclass
class GateReport:
    """What the JUnit XML and the Markdown summary say about one rollout."""

    summary: dict[str, Any]
    code: int
    cases: list[MetricCase] = field(default_factory=list)
    last_reason: str = ""

    @property
    def failures(self) -> int:
        return sum(case.failed for case in self.cases) + (self.code == ROLLED_BACK)


def gate_report(summary: dict[str, Any], events: Sequence[dict[str, Any]], code: int) -> GateReport:
    """The report for the latest run in ``events``: per stage and metric, the stage's last verdict."""
    last: dict[tuple[int, str], MetricCase] = {}
    report = GateReport(summary=summary, code=code)
    for event in events:
        if event.get("type") == RUN_START:  # a reused name: only the latest run counts
            last.clear()
            report.last_reason = ""
        if event.get("type") != "decision":
            continue
        decision = decision_of(event.get("data") or {})
        report.last_reason = event.get("message", "")
        stage = decision.stage or 0
        for metric in decision.evidence.metrics:
            failed = metric.action == "rollback" or (
                decision.action == "rollback" and decision.culprit == metric.metric)
            last[(stage, metric.metric)] = MetricCase(stage, decision.weight, metric, decision, failed)
    report.cases = [last[key] for key in sorted(last)]
    return report


def junit_xml(report: GateReport) -> str:
    """One ``<testsuite>`` per rollout: a case per stage and metric, and one for the outcome."""
    s = report.summary
    suite = ET.Element("testsuite", name=f"rollwise {s['name']}", tests=str(len(report.cases) + 1),
                       failures=str(report.failures), errors="0", skipped="0")
    props = ET.SubElement(suite, "properties")
    for key in ("service", "strategy", "phase", "stable", "canary", "canary_weight"):
        ET.SubElement(props, "property", name=key, value=str(s.get(key)))
    for case in report.cases:
        element = ET.SubElement(suite, "testcase", classname=f"rollwise.{s['name']}", name=case.name)
        text = f"{case.metric.summary}\n{case.numbers()}".strip()
        if case.failed:
            failure = ET.SubElement(element, "failure", message=f"{case.metric.metric}: {case.metric.action}",
                                    type=case.decision.rule or "rollback")
            failure.text = f"{case.decision.rule or ''}: {text}"
        else:
            ET.SubElement(element, "system-out").text = f"{case.metric.action}: {text}"
    outcome = ET.SubElement(suite, "testcase", classname=f"rollwise.{s['name']}", name="rollout outcome")
    words = f"{s['name']}: {s['phase']} ({OUTCOME_WORDS[report.code]}); {report.last_reason}".rstrip("; ")
    if report.code == ROLLED_BACK:
        ET.SubElement(outcome, "failure", message=words, type=s["phase"]).text = _paused_or(s, words)
    elif report.code != PROMOTED:
        ET.SubElement(outcome, "skipped", message=_paused_or(s, words))
    else:
        ET.SubElement(outcome, "system-out").text = words
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def markdown_summary(report: GateReport) -> str:
    """A short Markdown page: the outcome, then a table of each stage's verdict per metric."""
    s = report.summary
    icon = {PROMOTED: "✅", ROLLED_BACK: "❌", PAUSED_FOR_PERSON: "⏸️", TIMED_OUT: "⌛"}[report.code]
    lines = [f"## {icon} rollwise: `{s['name']}` {OUTCOME_WORDS[report.code]}", "",
             f"- service `{s['service']}`, {s['strategy']}: `{s['stable']}` → `{s['canary']}`",
             f"- phase **{s['phase']}**, canary weight {s['canary_weight']:g}%, exit code {report.code}"]
    if s.get("paused_reason"):
        lines.append(f"- paused: {_cell(s['paused_reason'])}")
    if s.get("route_error"):
        lines.append(f"- data plane refused the route: {_cell(s['route_error'])}")
    if s.get("metrics_error"):
        lines.append(f"- metrics backend failing: {_cell(s['metrics_error'])}")
    if report.last_reason:
        lines.append(f"- last verdict: {_cell(report.last_reason)}")
    if report.cases:
        lines += ["", "| stage | weight | metric | verdict | numbers |", "|---|---|---|---|---|"]
        for case in report.cases:
            verdict = f"**{case.metric.action}**" if case.failed else case.metric.action
            weight = f"{case.weight:g}%" if case.weight is not None else ""
            lines.append(f"| {case.stage} | {weight} | {_cell(case.metric.metric)} | {verdict} | "
                         f"{_cell(case.numbers())} |")
    lines += ["", f"`rollwise explain {s['name']}` says why, with the evidence."]
    return "\n".join(lines) + "\n"


def _paused_or(summary: dict[str, Any], words: str) -> str:
    return f"{words}; {summary['paused_reason']}" if summary.get("paused_reason") else words


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
