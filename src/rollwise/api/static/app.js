// rollwise dashboard: plain JS over the JSON API; live updates from the SSE stream.
"use strict";

(() => {
  const TOKEN_KEY = "rollwise.token";
  const view = document.getElementById("view");
  const notice = document.getElementById("notice");
  const esc = Charts.esc;
  const COLORS = { canary: "#d97706", baseline: "#2563eb", weight: "#7c3aed" };
  const TERMINAL = new Set(["Succeeded", "RolledBack", "Aborted"]);
  let route = { page: "rollouts" };
  let stream = null;
  let refreshTimer = null;

  // ------------------------------------------------------------------ API

  function token() { return localStorage.getItem(TOKEN_KEY) || ""; }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (token()) headers.Authorization = "Bearer " + token();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (!response.ok) {
      let detail = data && data.detail !== undefined ? data.detail : response.statusText;
      if (Array.isArray(detail)) detail = detail.map((d) => (d.loc || []).join(".") + ": " + d.msg).join("; ");
      throw new ApiError(response.status, String(detail));
    }
    return data;
  }

  const STATUS_TEXT = { 401: "Sign-in needed", 403: "Not allowed", 404: "Not found", 409: "Not possible now", 422: "Invalid request", 503: "Unavailable" };

  function showError(err) {
    const status = err.status || 0;
    const title = status ? `${status} ${STATUS_TEXT[status] || "Error"}` : "Error";
    let hint = "";
    if (status === 401) hint = " Set a token with the Token button.";
    if (status === 403) hint = " Ask an admin for a token with a higher role.";
    notice.className = "notice error";
    notice.innerHTML = `<strong>${esc(title)}</strong> ${esc(err.message)}${esc(hint)}` +
      `<button type="button" class="close" aria-label="Dismiss">×</button>`;
    notice.hidden = false;
  }

  function showOk(message) {
    notice.className = "notice ok";
    notice.innerHTML = `${esc(message)}<button type="button" class="close" aria-label="Dismiss">×</button>`;
    notice.hidden = false;
  }

  notice.addEventListener("click", (e) => { if (e.target.classList.contains("close")) notice.hidden = true; });

  // ------------------------------------------------------------------ formatting

  const pct = (v, digits = 2) => (v === null || v === undefined || !Number.isFinite(v) ? "–" : `${(v * 100).toFixed(digits)}%`);
  const ms = (v) => (v === null || v === undefined ? "–" : `${v.toFixed(v < 10 ? 1 : 0)} ms`);
  const num = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString(undefined, { maximumFractionDigits: 4 }));
  const when = (ts) => (ts ? new Date(ts * 1000).toLocaleString() : "–");

  function ago(ts) {
    if (!ts) return "–";
    const s = Math.max(0, Date.now() / 1000 - ts);
    if (s < 60) return `${Math.round(s)}s ago`;
    if (s < 3600) return `${Math.round(s / 60)}m ago`;
    if (s < 86400) return `${Math.round(s / 3600)}h ago`;
    return `${Math.round(s / 86400)}d ago`;
  }

  function phaseBadge(phase) {
    return `<span class="badge phase-${esc(String(phase).toLowerCase())}">${esc(phase)}</span>`;
  }

  function weightBar(r) {
    const c = Math.max(0, Math.min(100, r.canary_weight));
    return `<div class="weightbar" title="${esc(r.stable)} ${100 - c}% / ${esc(r.canary)} ${c}%">` +
      `<span class="stable" style="width:${100 - c}%"></span><span class="canary" style="width:${c}%"></span></div>`;
  }

  // ------------------------------------------------------------------ pages

  async function renderRollouts() {
    view.innerHTML = `<section class="page-head"><h1>Rollouts</h1><p class="muted">Every release rollwise has run or is running, newest first. Weights move live.</p></section><div id="rollout-list" class="card">Loading…</div>`;
    const at = route;
    const rollouts = await api("GET", "/api/v1/rollouts");
    if (route !== at) return;  // the user moved on while this loaded: never draw over the newer page
    rollouts.sort((a, b) => b.created_at - a.created_at);
    const list = document.getElementById("rollout-list");
    if (rollouts.length === 0) {
      list.innerHTML = `<div class="empty">No rollouts yet. Start one with <code>rollwise rollout start spec.yaml --server ${esc(location.origin)}</code>.</div>`;
      return;
    }
    list.innerHTML = `<table id="rollouts" class="table"><thead><tr><th>Rollout</th><th>Phase</th><th>Versions</th>` +
      `<th class="wide">Traffic</th><th>Verdict</th><th>Updated</th></tr></thead><tbody>` +
      rollouts.map(rowHtml).join("") + `</tbody></table>`;
  }

  function rowHtml(r) {
    return `<tr data-rollout="${esc(r.name)}"><td><a href="#/rollouts/${encodeURIComponent(r.name)}">${esc(r.name)}</a>` +
      `<div class="muted small">${esc(r.service)} · ${esc(r.strategy)}</div></td>` +
      `<td>${phaseBadge(r.phase)}</td><td>${esc(r.stable)} → ${esc(r.canary)}</td>` +
      `<td class="wide">${weightBar(r)}<span class="weight small">${num(r.canary_weight)}% to ${esc(r.canary)}</span></td>` +
      `<td>${esc(r.last_verdict || "–")}</td><td class="muted">${esc(ago(r.updated_at))}</td></tr>`;
  }

  async function renderRollout(name) {
    view.innerHTML = `<div class="loading">Loading ${esc(name)}…</div>`;
    const at = route;
    const r = await api("GET", `/api/v1/rollouts/${encodeURIComponent(name)}`);
    if (route !== at) return;
    view.innerHTML = `
      <section class="page-head">
        <a class="back" href="#/">← Rollouts</a>
        <h1>${esc(r.name)} <span id="rollout-phase">${phaseBadge(r.phase)}</span></h1>
        <p class="muted">${esc(r.service)} · ${esc(r.strategy)} · <b>${esc(r.stable)}</b> (stable) → <b>${esc(r.canary)}</b> (canary) · started ${esc(when(r.created_at))}</p>
      </section>
      <section class="grid-2">
        <div class="card">
          <h2>Traffic</h2>
          <div id="traffic"></div>
        </div>
        <div class="card">
          <h2>Controls</h2>
          <div class="controls">
            <input id="reason" type="text" maxlength="2000" placeholder="Reason (recorded in the audit log)">
            <div class="buttons">
              <button type="button" data-command="promote">Promote step</button>
              <button type="button" data-command="promote" data-full="1">Promote fully</button>
              <button type="button" data-command="approve">Approve</button>
              <button type="button" data-command="pause">Pause</button>
              <button type="button" data-command="resume">Resume</button>
              <button type="button" data-command="abort" class="danger">Abort</button>
            </div>
            <p class="muted small">Needs a <b>releaser</b> or <b>admin</b> token.</p>
          </div>
        </div>
      </section>
      <section class="card" id="waves-card" hidden><h2>Waves <span class="muted small">region by region; a failure rolls back every wave already updated</span></h2><div id="waves"></div></section>
      <section class="card"><h2>Canary vs baseline</h2>
        <div class="grid-3">
          <div><h3>Error rate</h3><div id="chart-errors"></div></div>
          <div><h3>Latency p99</h3><div id="chart-latency"></div></div>
          <div><h3>Canary weight</h3><div id="chart-weight"></div></div>
        </div>
        <div id="chart-kpis" class="grid-3"></div>
      </section>
      <section class="card"><h2>Decisions <span class="muted small">why the rollout moved; open a decision's evidence for its numbers</span></h2><div id="decisions"></div></section>
      <section class="card"><h2>History</h2><div id="history"></div></section>`;
    view.querySelectorAll("button[data-command]").forEach((button) => {
      button.addEventListener("click", () => sendCommand(r.name, button.dataset.command, !!button.dataset.full));
    });
    drawTraffic(r);
    await refreshDetails(r.name);
  }

  function drawTraffic(r) {
    const el = document.getElementById("traffic");
    if (!el) return;
    document.getElementById("rollout-phase").innerHTML = phaseBadge(r.phase);
    const steps = r.steps ? `step ${Math.min(r.step + (TERMINAL.has(r.phase) ? 0 : 1), r.steps)} of ${r.steps}` : `stage ${r.stage}`;
    el.innerHTML = `
      <div class="weights">
        <div class="weight-box stable"><div class="label">${esc(r.stable)} · stable</div><div id="weight-stable" class="big">${num(r.stable_weight)}%</div></div>
        <div class="weight-box canary"><div class="label">${esc(r.canary)} · canary</div><div id="weight-canary" class="big">${num(r.canary_weight)}%</div></div>
      </div>
      ${weightBar(r)}
      <dl class="facts">
        <dt>Progress</dt><dd>${esc(steps)}</dd>
        <dt>Last verdict</dt><dd>${esc(r.last_verdict || "–")}</dd>
        ${r.mirror_percent ? `<dt>Mirrored</dt><dd>${num(r.mirror_percent)}% to ${esc(r.canary)}</dd>` : ""}
        ${r.paused_reason ? `<dt>Paused</dt><dd>${esc(r.paused_reason)}</dd>` : ""}
        ${r.metrics_error ? `<dt>Metrics</dt><dd id="metrics-error" class="metrics-error">backend error: ${esc(r.metrics_error)}</dd>` : ""}
        ${r.route_error ? `<dt>Data plane</dt><dd id="route-error" class="metrics-error">refused the route: ${esc(r.route_error)}</dd>` : ""}
        ${r.rollback_until ? `<dt>Undo until</dt><dd>${esc(when(r.rollback_until))}</dd>` : ""}
        <dt>Updated</dt><dd>${esc(when(r.updated_at))}</dd>
      </dl>`;
    drawWaves(r);
  }

  function drawWaves(r) {
    // One row per region wave (RolloutSummary.waves); the card stays hidden for a rollout without waves.
    const card = document.getElementById("waves-card");
    const el = document.getElementById("waves");
    if (!card || !el) return;
    card.hidden = !r.waves || !r.waves.length;
    if (card.hidden) return;
    el.innerHTML = `<table class="table" id="waves-table"><thead><tr><th>Wave</th><th>Regions</th><th>Status</th>` +
      `<th>Canary</th><th>Requests</th><th>Started</th><th>Note</th></tr></thead><tbody>` +
      r.waves.map((w) => `<tr data-wave="${esc(w.name)}"><td>${esc(w.name)}</td><td>${esc(w.regions.join(", "))}</td>` +
        `<td class="wave-status">${esc(w.status)}</td><td>${num(w.weight)}%</td><td>${num(w.canary_requests)}</td>` +
        `<td class="muted">${w.started_at ? esc(when(w.started_at)) : "–"}</td>` +
        `<td class="small">${esc(w.failure || w.carried || "")}</td></tr>`).join("") + `</tbody></table>`;
  }

  async function refreshDetails(name) {
    const base = `/api/v1/rollouts/${encodeURIComponent(name)}`;
    const [r, windows, decisions, events] = await Promise.all([
      api("GET", base), api("GET", base + "/windows"), api("GET", base + "/decisions"), api("GET", base + "/events"),
    ]);
    if (route.page !== "rollout" || route.name !== name) return;
    const types = metricSpecs(r.spec);
    drawCharts(windows, events, decisions, types, r);
    drawDecisions(decisions, windows, types, r);
    drawHistory(events);
  }

  function noData(windows) {
    // A backend that failed is not a quiet service: say which it is.
    const last = windows.length ? windows[windows.length - 1] : null;
    return last && last.error ? `Metrics backend error: ${last.error}` : "No traffic observed yet";
  }

  function sidePoints(windows, side, pick) {
    return windows.map((w) => [w.end, w[side] ? pick(w[side]) : null]);
  }

  // ------------------------------------------------------------------ decisions in words

  // Every label a person reads instead of an identifier from the evidence.
  const ACTION_TEXT = { rollback: "Rolled back", expand: "Passed the stage", continue: "Keep observing", hold: "Holding",
    inconclusive: "Needs a human" };
  const METRIC_TEXT = { rollback: "Regressed", expand: "No regression", continue: "Undecided", hold: "No data",
    inconclusive: "Cannot be trusted" };
  const MARKER_TEXT = { rollback: "rollback", expand: "passed", inconclusive: "undecided" };
  const MARKED = new Set(Object.keys(MARKER_TEXT));
  const RULE_TEXT = {
    "e-value-bonferroni": "a sequential test proved the canary worse than the baseline",
    "slo-breach": "the canary breaks its SLO, with confidence",
    "predicted-burn-rate": "at full traffic the canary would burn the error budget too fast",
    "no-regression-decided": "every required metric ruled out a regression",
    "undecided": "not enough evidence either way yet",
    "no-data": "no metrics arrived: unknown, not bad",
    "sample-ratio-mismatch": "visits do not split like requests, so the KPI comparison cannot be trusted",
    "kayenta-score": "the Kayenta score crossed a threshold",
    "kayenta-marginal": "the Kayenta score is marginal",
    "threshold.failureLimit": "too many failed checks",
    "threshold.pass": "every check passed",
    "threshold.wait": "checks pass, waiting for enough requests",
    "threshold.noData": "no metrics in the latest window",
    "shadow.maxMismatchRate": "the shadow's responses differ too often",
    "shadow.compare.pass": "the shadow answered like the primary",
    "shadow.compare.noData": "no responses from the shadow were compared",
  };
  const TEST_TEXT = { "attribution-mixture": "Sequential test", "attribution-sprt": "Sequential test (SPRT)",
    "mann-whitney": "Mann-Whitney U test", threshold: "Threshold check", "clopper-pearson": "Exact binomial test",
    none: "SLO gate" };
  const BAD_WORD = { errorRate: "errors", latency: "slow", kpi: "converted" };

  function duration(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ""}`;
    return `${Math.floor(s / 3600)} h${Math.floor((s % 3600) / 60) ? ` ${Math.floor((s % 3600) / 60)} min` : ""}`;
  }

  function metricSpecs(spec) {
    // name -> metric spec (type, numerator, ...) from whichever strategy carries an analysis
    const out = {};
    for (const strategy of Object.values((spec && spec.strategy) || {})) {
      const analysis = strategy && strategy.analysis;
      for (const m of (analysis && analysis.metrics) || []) out[m.name] = m;
    }
    return out;
  }

  // The decision's own chart: its decisive metric, canary against baseline, with the decision marked.
  function metricChart(name, spec, windows, markers) {
    const type = spec ? spec.type : null;
    let pick = null, format = (v) => pct(v, 1), label = name;
    if (type === "errorRate") pick = (s) => (s.requests ? s.error_rate : null);
    else if (type === "latency") { pick = (s) => s.p99_ms; format = (v) => `${Math.round(v)} ms`; label = `${name} (p99)`; }
    else if (type === "kpi" && spec.numerator && spec.denominator) {
      pick = (s) => (s.kpis[spec.denominator] ? (s.kpis[spec.numerator] || 0) / s.kpis[spec.denominator] : null);
    }
    if (!pick) return `<div class="chart-empty small">No per-window chart for ${esc(name)}</div>`;
    return Charts.line([
      { name: "baseline", color: COLORS.baseline, points: sidePoints(windows, "baseline", pick) },
      { name: "canary", color: COLORS.canary, points: sidePoints(windows, "canary", pick) },
    ], { format, title: label, markers, empty: noData(windows) });
  }

  function decisionMarkers(decisions, only) {
    return decisions.filter((d) => (only ? d === only : MARKED.has(d.action))).map((d) =>
      ({ x: d.at, label: `${MARKER_TEXT[d.action] || ACTION_TEXT[d.action] || "decision"} #${d.index ?? d.seq}`,
         color: d.action === "rollback" ? "#dc2626" : d.action === "expand" ? "#059669" : "#d97706" }));
  }

  function drawCharts(windows, events, decisions, types, r) {
    const errors = document.getElementById("chart-errors");
    if (!errors) return;
    const markers = decisionMarkers(decisions);
    errors.innerHTML = Charts.line([
      { name: "baseline", color: COLORS.baseline, points: sidePoints(windows, "baseline", (s) => (s.requests ? s.error_rate : null)) },
      { name: "canary", color: COLORS.canary, points: sidePoints(windows, "canary", (s) => (s.requests ? s.error_rate : null)) },
    ], { format: (v) => pct(v, v < 0.01 ? 2 : 1), title: "error rate", empty: noData(windows), markers });
    document.getElementById("chart-latency").innerHTML = Charts.line([
      { name: "baseline p99", color: COLORS.baseline, points: sidePoints(windows, "baseline", (s) => s.p99_ms) },
      { name: "canary p99", color: COLORS.canary, points: sidePoints(windows, "canary", (s) => s.p99_ms) },
    ], { format: (v) => `${Math.round(v)} ms`, title: "latency p99", empty: "No latency observed yet", markers });
    const weights = [];
    for (const e of events) {
      if (e.data && typeof e.data.weight === "number" && e.type === "step") weights.push([e.at, e.data.weight]);
      else if (e.type === "phase" && /Aborted|RolledBack/.test(e.data.phase || "")) weights.push([e.at, 0]);
      else if (e.type === "created") weights.push([e.at, 0]);
    }
    document.getElementById("chart-weight").innerHTML = Charts.line(
      [{ name: "canary weight", color: COLORS.weight, points: weights, step: true }],
      { format: (v) => `${Math.round(v)}%`, yMax: 100, until: TERMINAL.has(r.phase) ? r.finished_at || r.updated_at : Date.now() / 1000,
        title: "canary weight", empty: "No steps yet", markers });
    const kpis = Object.values(types).filter((m) => m.type === "kpi");
    document.getElementById("chart-kpis").innerHTML = kpis.map((m) => `<div><h3>KPI ${esc(m.name)}</h3>` +
      metricChart(m.name, m, windows, markers) + `</div>`).join("");
  }

  const one = (word, n) => (n === 1 && word.endsWith("s") ? word.slice(0, -1) : word);

  function countsText(counts, type, gate) {
    // One side's counts as a person reads them: "5.56% (5 errors of 90)"; the SLO gate's when no comparison ran.
    if (!counts) return "–";
    const word = BAD_WORD[type] || "bad";
    if (gate && !counts.trials && !counts.requests && gate.trials) {
      return `${pct(gate.bad / gate.trials)} (${num(gate.bad)} ${one(word, gate.bad)} of ${num(gate.trials)})`;
    }
    let text = "–";
    if (counts.requests && counts.errors !== undefined) {
      text = `${pct(counts.errors / counts.requests)} (${num(counts.errors)} ${one("errors", counts.errors)} of ${num(counts.requests)})`;
    } else if (counts.trials && counts.bad !== undefined) {
      text = `${pct(counts.bad / counts.trials)} (${num(counts.bad)} ${one(word, counts.bad)} of ${num(counts.trials)})`;
    } else if (counts.compared) {
      text = `${pct(counts.mismatches / counts.compared)} differed (${num(counts.mismatches)} of ${num(counts.compared)})`;
    }
    if (counts.priorTrials) text += `; ${pct(counts.priorBad / counts.priorTrials)} before the rollout`;
    return text;
  }

  function gateText(gate) {
    if (!gate) return "";
    const verdict = gate.breached ? "breached" : gate.met ? "met" : "undecided";
    return `SLO gate ${pct(gate.limit)}: canary between ${pct(gate.lower)} and ${pct(gate.upper)} (${num(gate.bad)} of ${num(gate.trials)}) → ${verdict}`;
  }

  function testText(metric) {
    const params = metric.params || {};
    const parts = metric.test === "none" ? [] : [TEST_TEXT[metric.test] || metric.test];
    if (metric.test.startsWith("attribution") && metric.statistic !== null) {
      parts.push(`evidence ${num(metric.statistic)} against a bar of ${num(metric.threshold)}`);
    } else if (metric.test === "mann-whitney") {
      parts.push(`${params.classification || "–"}, p = ${num(metric.statistic)} (significant below ${num(metric.threshold)})`);
    } else if (metric.test === "clopper-pearson") {
      parts.push(`lower bound ${pct(metric.statistic)} against at most ${pct(metric.threshold)}`);
    } else if (metric.test === "threshold" && metric.statistic !== null) {
      parts.push(`value ${num(metric.statistic)}${metric.threshold !== null ? ` against ${num(metric.threshold)}` : ""}`);
    }
    if (params.thresholdMs !== undefined && params.thresholdMs !== null) parts.push(`slow means slower than ${num(params.thresholdMs)} ms`);
    const gate = gateText(params.slo);
    if (gate) parts.push(gate);
    return parts.join("; ");
  }

  function effectText(metric) {
    if (metric.effect === null || metric.effect === undefined) return "–";
    const relative = metric.params && metric.params.relative;
    const fmt = (v) => (v === null || !Number.isFinite(v) ? "–" : relative ? `${v >= 0 ? "+" : ""}${(100 * v).toFixed(1)}%`
      : `${v >= 0 ? "+" : ""}${(100 * v).toFixed(2)} pp`);
    if (!metric.interval) return fmt(metric.effect);
    // a bound past ±100 % says only "no limit on that side yet"
    const [low, high] = metric.interval.map((v) => (v !== null && Math.abs(v) < 1 ? v : null));
    let interval = "";
    if (low !== null && high !== null) interval = ` (between ${fmt(low)} and ${fmt(high)})`;
    else if (high !== null) interval = ` (at most ${fmt(high)})`;
    else if (low !== null) interval = ` (at least ${fmt(low)})`;
    return fmt(metric.effect) + interval;
  }

  function judgeFacts(evidence, d) {
    const facts = [["Rule", RULE_TEXT[evidence.rule] || evidence.rule || "–"]];
    if (d.weight !== null && d.weight !== undefined) facts.push(["Canary traffic", `${num(d.weight)}%`]);
    if (evidence.canaryRequests !== undefined && evidence.canaryRequests !== null) {
      facts.push(["Canary requests", num(evidence.canaryRequests) + (evidence.minSamples ? ` (at least ${num(evidence.minSamples)} needed)` : "")]);
    }
    if (evidence.elapsed !== undefined && evidence.elapsed !== null) facts.push(["Time in stage", duration(evidence.elapsed)]);
    if (evidence.windows) facts.push(["Observation windows", `${num(evidence.windowsWithData)} of ${num(evidence.windows)} with data`]);
    if (evidence.alpha !== undefined && evidence.alpha !== null) facts.push(["False-rollback risk", `at most ${pct(evidence.alpha, 1)}`]);
    const burn = evidence.burn;
    if (burn) facts.push(["Error budget at 100%", `would burn at ${num(burn.burnRate)}× (limit ${num(burn.limit)}×)`]);
    if (evidence.score !== undefined && evidence.score !== null) {
      facts.push(["Score", `${num(evidence.score)} (pass at ${num(evidence.passScore)}, fail below ${num(evidence.marginalScore)})`]);
    }
    if (evidence.failed_checks !== undefined && evidence.failed_checks !== null) {
      facts.push(["Failed checks", `${num(evidence.failed_checks)} (limit ${num(evidence.failure_limit)})`]);
    }
    if (evidence.compared !== undefined && evidence.compared !== null) {
      facts.push(["Responses compared", `${num(evidence.compared)}, ${num(evidence.mismatches)} differed`]);
    }
    if (d.metrics_error) facts.push(["Metrics backend", d.metrics_error]);
    return `<dl class="facts">${facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("")}</dl>`;
  }

  function metricRows(evidence, types) {
    if (!evidence.metrics.length) return "";
    const rows = evidence.metrics.map((metric) => {
      const type = types[metric.metric] ? types[metric.metric].type : null;
      const gate = metric.params.slo;
      const says = metric.test === "none" && gate ? (gate.breached ? "SLO breached" : gate.met ? "SLO met" : "Undecided")
        : METRIC_TEXT[metric.action] || metric.action;
      return `<tr class="${metric.metric === evidence.culprit ? "culprit" : ""}"><td><b>${esc(metric.metric)}</b></td>` +
        `<td>${esc(says)}</td><td>${esc(countsText(metric.canary, type, gate))}</td>` +
        `<td>${esc(metric.test === "none" ? "not compared" : countsText(metric.baseline, type))}</td><td>${esc(effectText(metric))}</td><td class="small">${esc(testText(metric))}</td></tr>`;
    }).join("");
    return `<table class="table evidence"><thead><tr><th>Metric</th><th>Says</th><th>Canary</th><th>Baseline</th>` +
      `<th>Difference</th><th>Test</th></tr></thead><tbody>${rows}</tbody></table>`;
  }

  function drawDecisions(decisions, windows, types, r) {
    const el = document.getElementById("decisions");
    if (!el) return;
    if (decisions.length === 0) {
      el.innerHTML = `<div class="empty">No decisions yet: the judge speaks once the first observation window closes.</div>`;
      return;
    }
    const open = new Set([...el.querySelectorAll("details[open]")].map((x) => x.dataset.seq));
    el.innerHTML = decisions.slice().reverse().map((d) => {
      const evidence = d.evidence;
      const number = d.index ?? d.seq;
      const culprit = evidence.culprit || d.culprit;
      const chart = culprit ? `<div class="decision-chart"><h3>${esc(culprit)} around this decision</h3>` +
        metricChart(culprit, types[culprit], windows, decisionMarkers(decisions, d)) + `</div>` : "";
      return `<article class="decision action-${esc(d.action || "none")}">
        <header><span class="badge action">${esc(ACTION_TEXT[d.action] || "Decision")}</span> <b>Decision ${esc(number)}</b>
          <span class="muted">${esc(when(d.at))} · ${esc(duration(d.at - r.created_at))} after the start</span></header>
        <p class="reason">${esc(d.message)}</p>
        ${culprit ? `<p class="small">Decided by <b>${esc(culprit)}</b></p>` : ""}
        ${chart}
        <details data-seq="${esc(d.seq)}"${open.has(String(d.seq)) ? " open" : ""}><summary>Evidence</summary>
          ${judgeFacts(evidence, d)}${metricRows(evidence, types)}
          <p class="muted small">The whole account in plain text: <code>rollwise explain ${esc(r.name)} --decision ${esc(number)}</code></p>
        </details>
      </article>`;
    }).join("");
  }

  function drawHistory(events) {
    const el = document.getElementById("history");
    if (!el) return;
    el.innerHTML = `<ol class="history">` + events.slice().reverse().slice(0, 200).map((e) =>
      `<li><span class="muted mono">#${e.seq} ${esc(Charts.clock(e.at))}</span> <span class="tag">${esc(e.type)}</span> ` +
      `<span class="muted">${esc(e.actor)}</span> ${esc(e.message)}</li>`).join("") + `</ol>`;
  }

  async function sendCommand(name, command, full) {
    const reason = (document.getElementById("reason") || {}).value || "";
    const body = command === "promote" ? { reason, full } : { reason };
    try {
      const r = await api("POST", `/api/v1/rollouts/${encodeURIComponent(name)}/${command}`, body);
      showOk(`${command}${full ? " (full)" : ""} recorded: ${r.name} is ${r.phase}`);
      drawTraffic(r);
      await refreshDetails(name);
    } catch (err) {
      showError(err);
    }
  }

  async function renderFlags() {
    view.innerHTML = `<section class="page-head"><h1>Feature flags</h1><p class="muted">The kill switch serves a flag's off variant to everyone at once. Needs a <b>releaser</b> token.</p></section><div id="flags" class="card">Loading…</div>`;
    const at = route;
    const data = await api("GET", "/api/v1/flags");
    const el = document.getElementById("flags");
    if (route !== at || !el) return;
    if (!data.enabled) {
      el.innerHTML = `<div class="empty">This server serves no flags. Start it with <code>rollwise serve --flags flags.json</code>.</div>`;
      return;
    }
    el.innerHTML = (data.last_error ? `<div class="notice error">The flag file was rejected; still serving version ${esc(data.version)}: ${esc(data.last_error)}</div>` : "") +
      `<p class="muted small">${esc(data.source)} · version ${esc(data.version)}</p>` +
      `<table class="table" id="flag-table"><thead><tr><th>Flag</th><th>State</th><th>Default</th><th>Variants</th><th></th></tr></thead><tbody>` +
      data.flags.map((f) => `<tr data-flag="${esc(f.key)}"><td><b>${esc(f.key)}</b>${f.targeted ? ' <span class="tag">targeted</span>' : ""}</td>
        <td>${f.killed ? '<span class="badge phase-aborted">killed</span>' : `<span class="badge ${f.state === "ENABLED" ? "phase-succeeded" : "phase-paused"}">${esc(f.state)}</span>`}</td>
        <td>${esc(f.default_variant ?? "–")}</td><td class="mono small">${esc(Object.keys(f.variants).join(", "))}</td>
        <td>${f.killed ? `<button type="button" data-flag-action="restore" data-key="${esc(f.key)}">Restore</button>`
                        : `<button type="button" class="danger" data-flag-action="kill" data-key="${esc(f.key)}">Kill switch</button>`}</td></tr>`).join("") +
      `</tbody></table>`;
    el.querySelectorAll("button[data-flag-action]").forEach((b) => b.addEventListener("click", async () => {
      try {
        await api("POST", `/api/v1/flags/${encodeURIComponent(b.dataset.key)}/${b.dataset.flagAction}`, { reason: "from the dashboard" });
        showOk(`${b.dataset.key}: ${b.dataset.flagAction} done`);
        await renderFlags();
      } catch (err) { showError(err); }
    }));
  }

  async function renderAudit() {
    view.innerHTML = `<section class="page-head"><h1>Audit log</h1><p class="muted">Every write and every refused write, chained by hashes. Needs an <b>admin</b> token.</p></section><div id="audit" class="card">Loading…</div>`;
    const at = route;
    const [verify, rows] = await Promise.all([api("GET", "/api/v1/audit/verify"), api("GET", "/api/v1/audit?limit=300")]);
    const el = document.getElementById("audit");
    if (route !== at || !el) return;
    el.innerHTML = `<p>${verify.ok ? `<span class="badge phase-succeeded">chain intact</span> ${esc(verify.rows)} rows` : `<span class="badge phase-aborted">chain broken</span> ${esc(verify.problem)}`}</p>` +
      `<table class="table"><thead><tr><th>#</th><th>When</th><th>Actor</th><th>Action</th><th>Target</th><th>Change</th><th>Reason</th></tr></thead><tbody>` +
      rows.map((a) => `<tr class="${a.denied ? "denied" : ""}"><td>${a.id}</td><td class="small nowrap">${esc(when(a.at))}</td><td class="nowrap">${esc(a.actor)} <span class="muted small">${esc(a.role)}</span></td>
        <td class="nowrap">${a.denied ? '<span class="badge phase-aborted">denied</span> ' : ""}${esc(a.action)}</td><td class="nowrap">${esc(a.target)}</td>
        <td class="small">${esc(changeText(a))}</td><td class="small">${esc(a.reason || "")}</td></tr>`).join("") + `</tbody></table>`;
  }

  function changeText(a) {
    if (a.denied) return `${a.after.status}: ${a.after.error}`;
    const b = a.before || {}, f = a.after || {};
    // the record's fields in words; a new rollout has no "before"
    const fields = { phase: ["phase", ""], canary_weight: ["canary weight", "%"] };
    const keys = Object.keys(fields).filter((k) => k in f && b[k] !== f[k]);
    return keys.map((k) => {
      const [label, unit] = fields[k];
      return k in b ? `${label} ${b[k]}${unit} → ${f[k]}${unit}` : `${label} ${f[k]}${unit}`;
    }).join(", ");
  }

  // ------------------------------------------------------------------ live updates

  function connectStream() {
    if (stream) stream.close();
    const live = document.getElementById("live");
    const url = "/api/v1/events/stream" + (token() ? "?access_token=" + encodeURIComponent(token()) : "");
    stream = new EventSource(url);
    stream.addEventListener("hello", () => { live.className = "live on"; });
    stream.onerror = () => { live.className = "live off"; };
    stream.addEventListener("rollout", (msg) => {
      const data = JSON.parse(msg.data);
      const r = data.rollout;
      if (route.page === "rollouts") {
        const row = document.querySelector(`tr[data-rollout="${CSS.escape(r.name)}"]`);
        if (row) row.outerHTML = rowHtml(r);
        else scheduleRefresh(() => renderRollouts());
      } else if (route.page === "rollout" && route.name === r.name) {
        drawTraffic(r);
        scheduleRefresh(() => refreshDetails(r.name));
      }
    });
  }

  function scheduleRefresh(fn) {
    // A refresh belongs to the page that asked for it: after a route change it is dropped, so a list
    // refresh queued by a stream event can never replace the rollout page the user just opened.
    const at = route;
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => { if (route === at) fn().catch(showError); }, 250);
  }

  // ------------------------------------------------------------------ session and routing

  async function refreshIdentity() {
    const el = document.getElementById("identity");
    try {
      const me = await api("GET", "/api/v1/whoami");
      if (me.authenticated) el.innerHTML = `${esc(me.name)} <span class="badge">${esc(me.role)}</span>`;
      else if (!me.tokens_required) el.innerHTML = `local <span class="badge">admin</span>`;
      else if (token()) el.textContent = "token not recognised";
      else el.textContent = "not signed in";
    } catch (err) {
      el.textContent = token() ? "token not recognised" : "not signed in";
    }
  }

  const form = document.getElementById("token-form");
  document.getElementById("token-button").addEventListener("click", () => {
    form.hidden = !form.hidden;
    if (!form.hidden) document.getElementById("token-input").focus();
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const value = document.getElementById("token-input").value.trim();
    if (value) localStorage.setItem(TOKEN_KEY, value);
    document.getElementById("token-input").value = "";
    form.hidden = true;
    onSession();
  });
  document.getElementById("token-clear").addEventListener("click", () => {
    localStorage.removeItem(TOKEN_KEY);
    form.hidden = true;
    onSession();
  });

  function onSession() {
    notice.hidden = true;
    refreshIdentity();
    connectStream();
    render();
  }

  function parseRoute() {
    const hash = location.hash.replace(/^#\/?/, "");
    const [first, ...rest] = hash.split("/");
    if (first === "rollouts" && rest.length) return { page: "rollout", name: decodeURIComponent(rest.join("/")) };
    if (first === "incidents") return { page: "incidents", id: rest[0] || "" };
    if (first === "experiments") return { page: "experiments", name: rest.length ? decodeURIComponent(rest.join("/")) : null };
    if (["flags", "metrics", "audit", "fleet"].includes(first)) return { page: first };
    return { page: "rollouts" };
  }

  async function render() {
    clearTimeout(refreshTimer);
    route = parseRoute();
    document.querySelectorAll("[data-nav]").forEach((a) =>
      a.classList.toggle("active", a.dataset.nav === (route.page === "rollout" ? "rollouts" : route.page)));
    try {
      if (route.page === "rollout") await renderRollout(route.name);
      else if (route.page === "flags") await renderFlags();
      else if (route.page === "metrics") await Delivery.render(view, api, showError);  // delivery.js
      else if (route.page === "experiments") await Experiments.render(view, api, showError, route.name);  // experiments.js
      else if (route.page === "audit") await renderAudit();
      else if (route.page === "incidents") await Incidents.render(view, api, showError, route.id);  // incidents.js
      else if (route.page === "fleet") await Fleet.render(view, api, showError);  // fleet.js
      else await renderRollouts();
    } catch (err) {
      view.innerHTML = `<div class="empty">Could not load this page.</div>`;
      showError(err);
    }
  }

  window.addEventListener("hashchange", () => { notice.hidden = true; render(); });
  onSession();
})();
