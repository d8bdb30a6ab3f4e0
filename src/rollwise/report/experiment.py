"""An experiment's readout as one self-contained HTML page, in the postmortem's style (inline SVG, no
scripts, no external URLs): hypothesis and owner, the decision with its rule, the primary metric's
lift and confidence sequence over time, every metric per variant, sample sizes and the SRM check."""

from __future__ import annotations

import time
from html import escape
from typing import Any

from rollwise.experiments.model import Experiment
from rollwise.experiments.readout import Readout
from rollwise.report import charts
from rollwise.report.postmortem import _CSS

_COLORS = ["#d9480f", "#2f9e44", "#7048e8", "#f08c00", "#1098ad"]


def lift_chart(experiment: Experiment, history: list[dict[str, Any]]) -> str:
    """Relative lift of each variant over time, with its confidence sequence (dashed) and 0."""
    series: list[charts.Series] = []
    variants = sorted({h["variant"] for h in history})
    start = experiment.started_at
    for i, variant in enumerate(variants):
        color = _COLORS[i % len(_COLORS)]
        rows = [h for h in history if h["variant"] == variant]
        for key, dashed in (("relative", False), ("cs_low", True), ("cs_high", True)):
            points = [(h["at"] - start, h[key] * 100 if h[key] is not None else None) for h in rows]
            name = f"{variant} lift" if key == "relative" else f"{variant} CS {'low' if key == 'cs_low' else 'high'}"
            series.append(charts.Series(name, points, color, dashed=dashed))
    if history:
        span = max(h["at"] for h in history) - start
        series.append(charts.Series("no effect", [(0.0, 0.0), (span, 0.0)], charts.PALETTE["axis"]))
    chart = charts.Chart(f"{experiment.spec.primary.name}: relative lift (%) and its confidence sequence",
                         series, y_format=lambda v: f"{v:+.1f}%", y_min=None)
    return charts.render(chart)


def _fmt(value: Any, percent: bool = False) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:+.2%}" if percent else f"{value:.5g}"
    return str(value)


def render_experiment(experiment: Experiment, result: Readout, history: list[dict[str, Any]]) -> str:
    e = escape
    spec = experiment.spec
    route = spec.route.model_dump(exclude_none=True) if spec.route else {}
    target = f"flag {spec.flag}" if spec.flag else f"route {route}"
    meta = [("Hypothesis", spec.hypothesis), ("Owner", spec.owner), ("On", target),
            ("Variants", ", ".join(spec.variants) + f" (control {spec.baseline})"),
            ("Allocation", ", ".join(f"{v} {s:.0%}" for v, s in spec.shares.items())),
            ("Status", experiment.status + (f" — {experiment.stop_reason}" if experiment.stop_reason else "")),
            ("α", f"{result.alpha:g} (each comparison {result.comparison_alpha:g}, Bonferroni)"),
            ("Horizon", f"{result.horizon:,} per variant ({'reached' if result.horizon_reached else 'not reached'})"
             if result.horizon else "none (sequential only)")]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>Experiment — {e(spec.name)}</title>", f"<style>{_CSS}</style></head><body><main>",
             f'<header class="top"><h1>{e(spec.name)}<span class="badge">{e(result.decision)}</span></h1>',
             f'<p class="summary">{e(result.reason)}</p><dl class="meta">']
    parts += [f"<div><dt>{e(k)}</dt><dd>{e(v)}</dd></div>" for k, v in meta]
    parts += ["</dl></header>", '<section id="rule"><h2>Decision rule</h2>', f"<p>{e(result.rule)}.</p></section>",
              '<section id="samples"><h2>Sample sizes and sample ratio</h2><div class="cards">']
    parts += [f'<div class="card"><div class="v">{n:,}</div><div class="k">{e(v)} '
              f"(planned {result.srm.expected[v]:.0%})</div></div>" for v, n in result.counts.items()]
    parts += [f'<div class="card"><div class="v">{e(result.srm.status)}</div><div class="k">SRM e-value '
              f"{result.srm.e_value:.3g} (halts at {result.srm.threshold:g})</div></div></div></section>",
              '<section id="chart"><h2>Lift over time</h2>', lift_chart(experiment, history), "</section>",
              '<section id="metrics"><h2>Metrics</h2><table><thead><tr><th>Metric</th><th>Role</th><th>Variant</th>'
              "<th>n</th><th>Control</th><th>Variant value</th><th>Lift</th><th>Confidence sequence</th>"
              "<th>Fixed-horizon t</th><th>Verdict</th></tr></thead><tbody>"]
    for m in result.metrics:
        if not m.comparisons:
            parts.append(f"<tr><td>{e(m.name)}</td><td>{e(m.role)}</td><td colspan=8>{e(m.note or '')}</td></tr>")
        for r in m.comparisons:
            verdict = "breach" if r.breach else {True: "better", False: "worse", None: "undecided"}[r.better]
            parts.append(f"<tr><td>{e(m.name)}{' (CUPED)' if m.cuped else ''}</td><td>{e(m.role)}</td>"
                         f"<td>{e(r.variant)}</td><td class=num>{r.subjects:,}</td><td class=num>"
                         f"{_fmt(m.control_value)}</td><td class=num>{_fmt(r.value)}</td><td class=num>"
                         f"{_fmt(r.relative, True)}</td><td class=num>[{_fmt(r.cs_low, True)}, {_fmt(r.cs_high, True)}]"
                         f"</td><td class=num>[{_fmt(r.fixed_low, True)}, {_fmt(r.fixed_high, True)}]</td>"
                         f"<td>{e(verdict)}</td></tr>")
    parts += ["</tbody></table></section>",
              f"<footer>Generated by rollwise from the experiment's exposures and metric events · "
              f"{e(time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()))}</footer>", "</main></body></html>"]
    return "\n".join(parts)
