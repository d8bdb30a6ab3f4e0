"""A rollout's postmortem as Markdown (for a wiki or PR) or one self-contained HTML file.

The HTML carries its CSS and SVG charts inline and references no URL, so it opens offline, can be
mailed or attached to a ticket, and prints. Both formats come from one ``Postmortem`` built from
the store's record, event log and observation windows, so they always agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

from rollwise.core.evidence import decision_of, evidence_of
from rollwise.core.model import Event, Phase, RolloutRecord, VersionStats, Window
from rollwise.core.protocols import Store, WatchStore
from rollwise.core.units import format_duration
from rollwise.core.waves import wave_rows
from rollwise.learning.incident_memory import Retrieval
from rollwise.report import charts
from rollwise.report.rca import Rca, build_rca, current_run
from rollwise.watch.incidents import Incident
from rollwise.watch.render import incident_text


@dataclass
class Decision:
    index: int
    at: float
    action: str
    rule: str
    weight: float | None
    stage: int | None
    message: str
    explanation: str


@dataclass
class StageRow:
    stage: int
    weight: float
    start: float
    end: float
    canary: VersionStats
    baseline: VersionStats


@dataclass
class Postmortem:
    record: RolloutRecord
    events: list[Event]
    windows: list[tuple[int, Window]]
    rca: Rca
    decisions: list[Decision]
    stages: list[StageRow]
    followups: list[str]
    charts: list[str] = field(default_factory=list)  # rendered SVG
    incidents: list[Incident] = field(default_factory=list)  # what the post-release watch opened on the service
    similar: Retrieval | None = None  # the past rollbacks and incidents most like this one (``report/similar.py``)

    def rca_text(self) -> str:
        """The RCA, followed by the similar past incidents and how each was resolved (when looked up)."""
        text = self.rca.text()
        return text if self.similar is None else text + "\n" + "\n".join(self.similar.lines())

    @property
    def title(self) -> str:
        return f"{self.record.spec.service}: {self.record.stable_version} → {self.record.canary_version}"

    @property
    def duration_s(self) -> float:
        end = self.record.finished_at or (self.events[-1].at if self.events else self.record.updated_at)
        return max(0.0, end - self.record.created_at)

    def summary(self) -> str:
        r, rca = self.record, self.rca
        took = format_duration(self.duration_s)
        if r.phase == Phase.SUCCEEDED:
            return (f"{r.canary_version} replaced {r.stable_version} for {r.spec.service} in {took}; "
                    f"{len(self.decisions)} decisions, no regression found.")
        if rca.failed:
            what = "; ".join(reg.text() for reg in rca.regressions) or rca.reason
            return (f"{r.canary_version} was {'rolled back' if r.phase == Phase.ROLLED_BACK else 'aborted'} after "
                    f"{took} at a peak of {rca.peak_weight:g}% of traffic. {what}. Users got {rca.canary_errors} "
                    f"failed requests from {r.canary_version} out of {rca.canary_requests}.")
        return f"{r.canary_version} is {r.phase} after {took}" + (f": {r.paused_reason}" if r.paused_reason else ".")


# ---------------------------------------------------------------- building


def _explain(event: Event, types: Mapping[str, str]) -> str:
    try:
        from rollwise.analysis.explain import explain_decision  # written by the analysis side

        return str(explain_decision(event))
    except Exception:
        pass
    from rollwise.adapters.notifiers.delivery import describe_metric

    lines = [event.message]
    for metric in evidence_of(event.data).metrics:
        line = describe_metric(metric, types.get(metric.metric))
        if line.has_numbers:
            lines.append(f"{line.text} → {line.action}")
    return "\n".join(lines)


def _stage_rows(events: Sequence[Event], windows: Sequence[tuple[int, Window]]) -> list[StageRow]:
    weights: dict[int, float] = {}
    for e in events:
        decision = decision_of(e.data) if e.type == "decision" else None
        if decision is not None and decision.stage is not None:
            weights.setdefault(decision.stage, float(decision.weight or 0))
    by_stage: dict[int, list[Window]] = {}
    for stage, window in windows:
        if window.has_data:
            by_stage.setdefault(stage, []).append(window)
    rows = []
    for stage, ws in sorted(by_stage.items()):
        rows.append(StageRow(
            stage=stage, weight=weights.get(stage, float("nan")), start=ws[0].start, end=ws[-1].end,
            canary=VersionStats.merge([w.canary for w in ws if w.canary is not None]),
            baseline=VersionStats.merge([w.baseline for w in ws if w.baseline is not None]),
        ))
    return rows


def _followups(record: RolloutRecord, rca: Rca, events: Sequence[Event]) -> list[str]:
    items = []
    for reg in rca.regressions:
        items.append(f"Find and fix the {reg.metric} regression in {record.canary_version} "
                     f"({reg.text()}); add a test that reproduces it before re-releasing.")
    for onset in rca.onset:
        if onset.at is not None and "after the canary weight moved" in onset.relative:
            items.append(f"The {onset.series} rose only after a traffic step ({onset.relative}): check for "
                         "load- or cache-dependent behaviour and cover it in a load test.")
    if any(e.type == "phase" and "no metrics" in e.message for e in events):
        items.append("Telemetry went missing during the rollout: fix the metrics pipeline so every stage can be "
                     "judged.")
    if any(e.type == "decision" and decision_of(e.data).action == "inconclusive" for e in events):
        items.append("A stage ended undecided: raise traffic to the canary, lengthen maxStageTime, or state a "
                     "minimal effect (minEffect) so the test can decide.")
    if rca.failed and rca.detection_s is not None and rca.detection_s > 600:
        items.append(f"Detection took {format_duration(rca.detection_s)}: consider a larger first step or "
                     "a sequential judge with minEffect.")
    if record.phase == Phase.ABORTED and not rca.regressions:
        items.append("The rollout was aborted by a person: record why in the ticket.")
    if rca.failed:
        items.append(f"Re-release with `rollwise rollout start` once fixed; keep {record.stable_version} as stable "
                     "until then.")
    return items


def build_postmortem(record: RolloutRecord, events: Sequence[Event],
                     windows: Sequence[tuple[int, Window]]) -> Postmortem:
    run_events = current_run(events)
    analysis = record.spec.analysis()
    types = {m.name: m.type for m in analysis.metrics} if analysis is not None else {}
    rca = build_rca(record, run_events, windows)
    decisions = [
        Decision(index=i + 1 if d.index is None else d.index, at=e.at, action=str(d.action),
                 rule="" if d.rule is None else d.rule, weight=d.weight, stage=d.stage,
                 message=e.message, explanation=_explain(e, types))
        for i, (e, d) in enumerate((x, decision_of(x.data)) for x in run_events if x.type == "decision")
    ]
    pm = Postmortem(record=record, events=run_events, windows=list(windows), rca=rca, decisions=decisions,
                    stages=_stage_rows(run_events, windows), followups=_followups(record, rca, run_events))
    pm.charts = [charts.render(c) for c in build_charts(pm)]
    return pm


def load_postmortem(store: Store, name: str, watch: WatchStore | None = None) -> Postmortem:
    """The postmortem of the rollout's latest run: an earlier rollout under the same name stays out of it.
    The watch's incidents on the service since the run began are part of it (``watch``, else the store's)."""
    from rollwise.core.model import split_runs
    from rollwise.wiring import open_watch

    record = store.get(name)
    runs = split_runs(store.events(name))
    pm = build_postmortem(record, runs[-1] if runs else [], store.windows(name))
    watch = watch if watch is not None else open_watch(store)
    pm.incidents = [i for i in watch.incidents(service=record.spec.service) if i.opened_at >= record.created_at]
    return pm


# ---------------------------------------------------------------- charts


def _kpi_series(record: RolloutRecord, windows: Sequence[Window]) -> list[tuple[str, str, str]]:
    """(title, numerator, denominator) for each KPI worth charting."""
    analysis = record.spec.analysis()
    kpis = [(m.name, m.numerator, m.denominator) for m in (analysis.metrics if analysis else [])
            if m.type == "kpi" and m.numerator and m.denominator]
    if kpis:
        return [(name, str(num), str(den)) for name, num, den in kpis]
    keys = sorted({k for w in windows for side in (w.canary, w.baseline) if side for k in side.kpis})
    # without a spec'd KPI, chart each counter per request (e.g. checkout per visit when both exist)
    if "visit" in keys:
        return [(f"{k} per visit", k, "visit") for k in keys if k != "visit"]
    return [(f"{k} per request", k, "") for k in keys]


def build_charts(pm: Postmortem) -> list[charts.Chart]:
    t0 = pm.record.created_at
    data = [w for _, w in pm.windows if w.has_data]
    markers = [charts.Marker(e.at - t0, f"{e.data['weight']:g}%") for e in pm.events
               if e.type == "step" and e.data.get("weight") is not None]
    for e in pm.events:
        if e.type == "phase" and e.data.get("phase") in (str(Phase.ROLLED_BACK), str(Phase.ABORTED)):
            markers.append(charts.Marker(e.at - t0, "rollback" if "RolledBack" in e.data["phase"] else "abort",
                                         charts.PALETTE["bad"]))
    end = pm.duration_s
    weight_points: list[tuple[float, float | None]] = [(0.0, 0.0)]
    for e in pm.events:
        if e.type == "step" and e.data.get("weight") is not None:
            weight_points.append((e.at - t0, float(e.data["weight"])))
        if e.type == "phase" and e.data.get("phase") in (str(Phase.ROLLED_BACK), str(Phase.ABORTED)):
            weight_points.append((e.at - t0, 0.0))
    out = [charts.Chart("Canary traffic weight (%)", [charts.Series("canary weight", weight_points,
                                                                     charts.PALETTE["weight"], step=True)],
                        y_format=lambda v: f"{v:g}%", y_max=100.0, x_end=end, height=180)]

    def mid(w: Window) -> float:
        return (w.start + w.end) / 2 - t0

    def series(values: Any, name: str, color: str, dashed: bool = False) -> charts.Series:
        return charts.Series(name, [(mid(w), values(w)) for w in data], color, dashed)

    def error_rate(side: str) -> Any:
        def value(w: Window) -> float | None:
            stats = getattr(w, side)
            return stats.error_rate * 100 if stats is not None and stats.requests else None
        return value

    out.append(charts.Chart("Error rate (%) — canary vs baseline", [
        series(error_rate("baseline"), "baseline", charts.PALETTE["baseline"]),
        series(error_rate("canary"), "canary", charts.PALETTE["canary"]),
    ], y_format=lambda v: f"{v:.2g}%", markers=markers, x_end=end))

    def p99(side: str) -> Any:
        def value(w: Window) -> float | None:
            stats = getattr(w, side)
            return stats.quantile(0.99) if stats is not None else None
        return value

    out.append(charts.Chart("p99 latency (ms) — canary vs baseline", [
        series(p99("baseline"), "baseline", charts.PALETTE["baseline"]),
        series(p99("canary"), "canary", charts.PALETTE["canary"]),
    ], y_format=lambda v: f"{v:g}", markers=markers, x_end=end))

    for title, num, den in _kpi_series(pm.record, data):
        def ratio(side: str, num: str = num, den: str = den) -> Any:
            def value(w: Window) -> float | None:
                stats = getattr(w, side)
                if stats is None:
                    return None
                trials = stats.kpis.get(den, 0.0) if den else float(stats.requests)
                return stats.kpis.get(num, 0.0) / trials * 100 if trials else None
            return value

        out.append(charts.Chart(f"KPI: {title} (%) — canary vs baseline", [
            series(ratio("baseline"), "baseline", charts.PALETTE["baseline"]),
            series(ratio("canary"), "canary", charts.PALETTE["canary"]),
        ], y_format=lambda v: f"{v:.3g}%", markers=markers, x_end=end))
    return out


# ---------------------------------------------------------------- rendering helpers


def _utc(at: float | None) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if at else "—"


def _rel(pm: Postmortem, at: float) -> str:
    return "+" + format_duration(max(0.0, at - pm.record.created_at)) if at > pm.record.created_at else "+0s"


def _pct(k: int, n: int) -> str:
    return f"{k / n * 100:.2f}%" if n else "n/a"


def _ms(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.0f} ms"


def _meta(pm: Postmortem) -> list[tuple[str, str]]:
    r = pm.record
    rows = [("Service", r.spec.service), ("Rollout", r.name), ("Strategy", r.spec.strategy.kind),
            ("Stable → canary", f"{r.stable_version} → {r.canary_version}"), ("Outcome", str(r.phase)),
            ("Started", _utc(r.created_at)), ("Ended", _utc(r.finished_at)),
            ("Duration", format_duration(pm.duration_s)), ("Peak canary traffic", f"{pm.rca.peak_weight:g}%")]
    if r.spec.region:
        rows.append(("Region", r.spec.region))
    if r.spec.labels:
        rows.append(("Labels", ", ".join(f"{k}={v}" for k, v in sorted(r.spec.labels.items()))))
    return rows


def _impact(pm: Postmortem) -> list[tuple[str, str]]:
    rca = pm.rca
    rows = [("Requests served by the canary", f"{rca.canary_requests:,}"),
            ("Failed canary requests", f"{rca.canary_errors:,}"),
            ("Failures above the baseline rate", f"~{rca.excess_errors:,.0f}"),
            ("Canary requests slower than baseline p99", f"{rca.canary_slow:,}")]
    if rca.detection_s is not None:
        rows.append(("Time to detect", format_duration(rca.detection_s)))
    return rows


def _timeline(pm: Postmortem) -> list[tuple[str, str, str, str]]:
    out = []
    for e in pm.events:
        if e.type == "decision" and decision_of(e.data).action in ("continue", "hold"):
            continue
        out.append((_rel(pm, e.at), e.actor, e.type, e.message))
    return out


# ---------------------------------------------------------------- Markdown


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(pm: Postmortem) -> str:
    lines = [f"# Postmortem — {pm.title}", "", pm.summary(), "", "| | |", "|---|---|"]
    lines += [f"| {k} | {_md(v)} |" for k, v in _meta(pm)]
    lines += ["", "## Impact", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in _impact(pm)]
    waves = wave_rows(pm.record)
    if waves:
        lines += ["", "## Waves", "", "| wave | regions | status | canary now | canary requests (errors) | note |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {_md(w.name)} | {_md(', '.join(w.regions))} | {w.status} | {w.weight:g}% | "
                  f"{w.canary_requests} ({w.canary_errors}) | {_md(w.failure or w.carried or '')} |" for w in waves]
    lines += ["", "## Canary vs baseline by stage", "",
              "| stage | weight | window | canary errors | baseline errors | canary p99 | baseline p99 |",
              "|---|---|---|---|---|---|---|"]
    for row in pm.stages:
        weight = "—" if math.isnan(row.weight) else f"{row.weight:g}%"
        lines.append(f"| {row.stage} | {weight} | {_rel(pm, row.start)} – {_rel(pm, row.end)} | "
                     f"{_pct(row.canary.errors, row.canary.requests)} ({row.canary.errors}/{row.canary.requests}) | "
                     f"{_pct(row.baseline.errors, row.baseline.requests)} | {_ms(row.canary.quantile(0.99))} | "
                     f"{_ms(row.baseline.quantile(0.99))} |")
    lines += ["", "## Timeline", "", "| when | who | what | detail |", "|---|---|---|---|"]
    lines += [f"| {w} | {a} | {t} | {_md(m)} |" for w, a, t, m in _timeline(pm)]
    lines += ["", "## Decisions", ""]
    for d in pm.decisions:
        weight = f"{d.weight:g}%" if isinstance(d.weight, int | float) else "—"
        lines += [f"### Decision {d.index}: {d.action} ({_rel(pm, d.at)}, {weight} canary, rule `{d.rule}`)",
                  "", "```", d.explanation, "```", ""]
    if pm.rca.failed:
        lines += ["## Root cause summary", "", "```", pm.rca_text(), "```", ""]
        if pm.rca.traces:  # clickable, relative to the rollwise serve that kept them
            lines += ["### Exemplar traces", ""] + [f"- [{t.kind} trace `{t.trace_id}`]({t.link}): "
                                                    f"{t.duration_ms:.0f} ms, origin span `{t.origin}`"
                                                    for t in pm.rca.traces] + [""]
    if pm.incidents:
        lines += ["## Incidents after the release (post-release watch)", ""]
        for incident in pm.incidents:
            lines += ["```", incident_text(incident), "```", ""]
    lines += ["## Follow-ups", ""]
    lines += [f"- [ ] {item}" for item in pm.followups] or ["- none"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- HTML

_CSS = """
:root{--ink:#212529;--muted:#6c757d;--line:#dee2e6;--bg:#f8f9fa;--good:#2b8a3e;--bad:#c92a2a;--warn:#e67700;
--accent:#3b5bdb}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:980px;margin:0 auto;padding:32px 24px 64px}
header.top{background:#fff;border:1px solid var(--line);border-radius:10px;padding:24px 28px;margin-bottom:20px}
h1{font-size:24px;margin:0 0 6px} h2{font-size:17px;margin:0 0 12px} h3{font-size:14px;margin:14px 0 6px}
.badge{display:inline-block;padding:2px 10px;border-radius:999px;font-size:12px;font-weight:600;color:#fff;
vertical-align:middle;margin-left:8px}
.badge.good{background:var(--good)} .badge.bad{background:var(--bad)} .badge.warn{background:var(--warn)}
.summary{font-size:15px;margin:10px 0 0}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:20px 24px;margin-bottom:20px}
dl.meta{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:10px 24px;margin:18px 0 0}
dl.meta dt{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
dl.meta dd{margin:0;font-weight:600}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:12px}
.card{border:1px solid var(--line);border-radius:8px;padding:12px 14px}
.card .v{font-size:22px;font-weight:700} .card .k{color:var(--muted);font-size:12px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.chart{display:block;max-width:100%;height:auto;margin:6px 0 14px}
pre{background:#f1f3f5;border-radius:6px;padding:12px 14px;overflow-x:auto;white-space:pre-wrap;font:12px/1.5
ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.decision{border-left:4px solid var(--line);padding:2px 0 2px 12px;margin:10px 0}
.decision.rollback{border-color:var(--bad)} .decision.expand{border-color:var(--good)}
.decision.inconclusive{border-color:var(--warn)}
ul.followups li{margin:4px 0}
footer{color:var(--muted);font-size:12px;text-align:center}
@media print{body{background:#fff} section,header.top{border:none;padding:0 0 12px}}
"""


def _severity(record: RolloutRecord) -> str:
    if record.phase == Phase.SUCCEEDED:
        return "good"
    if record.phase in (Phase.ROLLED_BACK, Phase.ABORTED):
        return "bad"
    return "warn"


def to_html(pm: Postmortem, trace_links: Mapping[str, str] | None = None) -> str:
    """The postmortem as one HTML file; an exemplar trace links to ``trace_links[trace id]`` when given (the
    demo writes them beside the report), else to the ``rollwise serve`` path that keeps it."""
    e = escape
    links = trace_links or {}
    r = pm.record
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Postmortem — {e(pm.title)}</title>", f"<style>{_CSS}</style></head><body><main>",
        '<header class="top">',
        f'<h1>{e(pm.title)}<span class="badge {_severity(r)}">{e(str(r.phase))}</span></h1>',
        f'<p class="summary">{e(pm.summary())}</p>', '<dl class="meta">',
    ]
    parts += [f"<div><dt>{e(k)}</dt><dd>{e(v)}</dd></div>" for k, v in _meta(pm)]
    parts += ["</dl></header>", '<section id="impact"><h2>Impact</h2><div class="cards">']
    parts += [f'<div class="card"><div class="v">{e(v)}</div><div class="k">{e(k)}</div></div>'
              for k, v in _impact(pm)]
    parts += ["</div></section>", '<section id="charts"><h2>Traffic and health over time</h2>']
    parts += pm.charts
    parts += ["</section>"]
    waves = wave_rows(r)
    if waves:
        parts += ['<section id="waves"><h2>Waves</h2><table><thead><tr><th>Wave</th><th>Regions</th>'
                  "<th>Status</th><th>Canary now</th><th>Canary requests (errors)</th><th>Note</th></tr>"
                  "</thead><tbody>"]
        parts += [f"<tr><td>{e(w.name)}</td><td>{e(', '.join(w.regions))}</td><td>{e(w.status)}</td>"
                  f"<td class=num>{w.weight:g}%</td><td class=num>{w.canary_requests} ({w.canary_errors})</td>"
                  f"<td>{e(w.failure or w.carried or '')}</td></tr>" for w in waves]
        parts += ["</tbody></table></section>"]
    parts += ['<section id="stages"><h2>Canary vs baseline by stage</h2><table><thead><tr>',
              "<th>Stage</th><th>Weight</th><th>Window</th><th>Canary errors</th><th>Baseline errors</th>"
              "<th>Canary p99</th><th>Baseline p99</th></tr></thead><tbody>"]
    for row in pm.stages:
        weight = "—" if math.isnan(row.weight) else f"{row.weight:g}%"
        parts.append(
            f"<tr><td>{row.stage}</td><td class=num>{weight}</td><td class=num>{_rel(pm, row.start)} – "
            f"{_rel(pm, row.end)}</td><td class=num>{_pct(row.canary.errors, row.canary.requests)} "
            f"({row.canary.errors}/{row.canary.requests})</td><td class=num>"
            f"{_pct(row.baseline.errors, row.baseline.requests)} ({row.baseline.errors}/{row.baseline.requests})</td>"
            f"<td class=num>{_ms(row.canary.quantile(0.99))}</td><td class=num>{_ms(row.baseline.quantile(0.99))}</td>"
            "</tr>")
    parts += ["</tbody></table></section>", '<section id="timeline"><h2>Timeline</h2><table><thead><tr>'
              "<th>When</th><th>Who</th><th>What</th><th>Detail</th></tr></thead><tbody>"]
    parts += [f"<tr><td class=num>{e(w)}</td><td>{e(a)}</td><td>{e(t)}</td><td>{e(m)}</td></tr>"
              for w, a, t, m in _timeline(pm)]
    parts += ["</tbody></table></section>", '<section id="decisions"><h2>Decisions and their evidence</h2>']
    for d in pm.decisions:
        weight = f"{d.weight:g}% canary" if isinstance(d.weight, int | float) else ""
        parts.append(f'<div class="decision {e(d.action)}"><h3>#{d.index} {e(d.action)} · {e(_rel(pm, d.at))} · '
                     f"{e(weight)} · rule <code>{e(d.rule)}</code></h3><pre>{e(d.explanation)}</pre></div>")
    if not pm.decisions:
        parts.append("<p>No decisions were recorded.</p>")
    parts.append("</section>")
    if pm.rca.failed:
        parts += ['<section id="rca"><h2>Root cause summary</h2>', f"<pre>{e(pm.rca_text())}</pre>"]
        parts += [f'<p class="exemplar">Exemplar trace: <a href="{e(links.get(t.trace_id, t.link))}">{e(t.kind)} '
                  f"{e(t.trace_id)}</a>, {t.duration_ms:.0f} ms, origin span <code>{e(t.origin)}</code></p>"
                  for t in pm.rca.traces]
        parts += ["</section>"]
    if pm.incidents:
        parts += ['<section id="incidents"><h2>Incidents after the release (post-release watch)</h2>']
        parts += [f"<pre>{e(incident_text(incident))}</pre>" for incident in pm.incidents]
        parts += ["</section>"]
    parts += ['<section id="followups"><h2>Follow-ups</h2><ul class="followups">']
    parts += [f"<li>{e(item)}</li>" for item in pm.followups] or ["<li>None.</li>"]
    generated = _utc(pm.events[-1].at if pm.events else None)
    parts += ["</ul></section>",
              f"<footer>Generated by rollwise from the rollout's event log · {e(generated)}</footer>",
              "</main></body></html>"]
    return "\n".join(parts)
