// The incidents page: what the post-release watch opened, and for one incident the anomalous metric
// with its onset and the culprit change marked, the evidence in words, and what the watch did.
// Reads GET /api/v1/incidents and /api/v1/incidents/{id}.
"use strict";

const Incidents = (() => {
  const esc = Charts.esc;
  const COLORS = { line: "#2563eb", onset: "#dc2626", culprit: "#7c3aed", resolved: "#059669" };

  const when = (ts) => (ts ? new Date(ts * 1000).toLocaleString() : "–");
  const pct = (v) => (Number.isFinite(v) ? `${(v * 100).toFixed(2)} %` : "–");

  function culpritText(i) {
    const c = i.culprit;
    if (!c) return `no change (${esc((i.attribution || {}).reason || "none attributable")})`;
    const conf = (i.attribution || {}).confidence;
    return `${esc(c.kind)} of ${esc(c.service)}${c.version ? " " + esc(c.version) : ""} at ${esc(when(c.at))}` +
      (Number.isFinite(conf) ? ` (confidence ${conf.toFixed(2)})` : "");
  }

  function rowHtml(i) {
    return `<tr><td><a href="#/incidents/${i.id}">#${i.id}</a></td><td>${esc(i.service)}</td>` +
      `<td><span class="badge ${i.status === "open" ? "phase-aborted" : "phase-succeeded"}">${esc(i.status)}</span></td>` +
      `<td>${esc(i.metric)}</td><td>${esc(when(i.onset))}</td><td>${culpritText(i)}</td>` +
      `<td>${i.actions.filter((a) => a.outcome === "done").map((a) => esc(a.kind)).join(", ") || "–"}</td></tr>`;
  }

  async function renderList(view, api) {
    const hash = location.hash;
    const incidents = await api("GET", "/api/v1/incidents");
    if (location.hash !== hash) return;  // the reader moved on while this loaded: draw nothing over the new page
    view.innerHTML = `<section class="page-head"><h1>Incidents</h1><p class="muted">Anomalies the post-release ` +
      `watch found, the change it names behind each (or none), and what it did.</p></section>` +
      (incidents.length === 0 ? `<div class="card"><div class="empty">No incidents.</div></div>` :
        `<div class="card"><table class="table"><thead><tr><th>#</th><th>Service</th><th>Status</th><th>Metric</th>` +
        `<th>Onset</th><th>Culprit</th><th>Actions</th></tr></thead><tbody>` +
        incidents.slice().reverse().map(rowHtml).join("") + `</tbody></table></div>`);
  }

  function evidenceHtml(i) {
    const a = i.attribution || {}, o = a.onset, s = a.split || {};
    const facts = [`<li>Onset: ${esc(when(i.onset))}${o ? ` (95 % interval ${esc(when(o.low))} – ${esc(when(o.high))}, ` +
      `a ${esc(o.shape || "step")})` : ""}</li>`];
    if (o) facts.push(`<li>Effect: ${pct(o.before_mean)} → ${pct(o.after_mean)} (difference ${pct(o.effect)}, ` +
      `95 % interval ${pct(o.effect_low)} – ${pct(o.effect_high)})</li>`);
    if (s.version) facts.push(`<li>Split: ${esc(s.version)} failed ${pct(s.rate)} against ${pct(s.others_rate)} ` +
      `for the rest (difference 95 % interval ${pct(s.low)} – ${pct(s.high)})</li>`);
    facts.push(`<li>Culprit: ${culpritText(i)}${a.reason && i.culprit ? ` — ${esc(a.reason)}` : ""}</li>`);
    if (i.resolved_at) facts.push(`<li>Resolved ${esc(when(i.resolved_at))}, ${Math.round(i.recovery_s)} s after detection</li>`);
    return `<ul class="incident-evidence">${facts.join("")}</ul>`;
  }

  function actionsHtml(i) {
    if (!i.actions.length) return `<div class="empty">No actions.</div>`;
    return `<table class="table"><thead><tr><th>When</th><th>Action</th><th>Target</th><th>Outcome</th><th>Rule</th></tr>` +
      `</thead><tbody>${i.actions.map((a) => `<tr><td>${esc(when(a.at))}</td><td>${esc(a.kind)}</td>` +
        `<td>${esc(a.target)}</td><td>${esc(a.outcome)}</td><td>${esc(a.rule)}${a.detail ? ": " + esc(a.detail) : ""}` +
        `</td></tr>`).join("")}</tbody></table>`;
  }

  async function renderOne(view, api, id) {
    const hash = location.hash;
    const i = await api("GET", `/api/v1/incidents/${encodeURIComponent(id)}`);
    if (location.hash !== hash) return;
    const markers = [{ x: i.onset, label: "onset", color: COLORS.onset }];
    if (i.culprit) markers.push({ x: i.culprit.at, label: i.culprit.version || i.culprit.kind, color: COLORS.culprit });
    const rate = i.metric === "errorRate";
    const chart = Charts.line([{ name: i.metric, color: COLORS.line, points: i.series }],
      { markers, title: `${i.metric} around the incident`, format: rate ? pct : undefined,
        empty: "No points were kept for this incident" });
    view.innerHTML = `<section class="page-head"><h1>Incident #${i.id} on ${esc(i.service)}</h1>` +
      `<p class="muted"><a href="#/incidents">All incidents</a> · ${esc(i.status)} · ${esc(i.metric)}</p></section>` +
      `<div class="card"><h2>${esc(i.metric)}, onset and culprit marked</h2>${chart}</div>` +
      `<div class="card"><h2>Evidence</h2>${evidenceHtml(i)}</div>` +
      `<div class="card"><h2>What the watch did</h2>${actionsHtml(i)}</div>`;
  }

  async function render(view, api, showError, id) {
    view.innerHTML = `<div class="loading">Loading…</div>`;
    try {
      if (id) await renderOne(view, api, id);
      else await renderList(view, api);
    } catch (err) {
      view.innerHTML = `<div class="card"><div class="empty">${esc("Could not load incidents: " + err.message)}</div></div>`;
      showError(err);
    }
  }

  return { render };
})();
