// The experiments pages: #/experiments lists them, #/experiments/NAME reads one out.
// Reads GET /api/v1/experiments, /api/v1/experiments/NAME (with its readout) and …/history (the lift chart).
"use strict";

const Experiments = (() => {
  const esc = Charts.esc;
  const pct = (v) => (v === null || v === undefined ? "–" : `${v >= 0 ? "+" : ""}${(v * 100).toFixed(2)}%`);
  const num = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString(undefined, { maximumSignificantDigits: 5 }));
  const COLORS = ["#d97706", "#059669", "#7c3aed", "#dc2626", "#0891b2"];

  // relative lift over time with its confidence sequence as a band; 0 drawn, negatives allowed
  function liftChart(history) {
    if (!history.length) return `<div class="chart-empty">No exposures yet</div>`;
    const W = 720, H = 220, P = { l: 56, r: 12, t: 12, b: 26 };
    const xs = history.map((h) => h.at), ys = history.flatMap((h) => [h.cs_low, h.cs_high, 0]).filter(Number.isFinite);
    const x0 = Math.min(...xs), x1 = Math.max(...xs) === x0 ? x0 + 1 : Math.max(...xs);
    const y0 = Math.min(...ys), y1 = Math.max(...ys) === y0 ? y0 + 0.01 : Math.max(...ys);
    const sx = (x) => P.l + ((x - x0) / (x1 - x0)) * (W - P.l - P.r);
    const sy = (y) => P.t + (1 - (y - y0) / (y1 - y0)) * (H - P.t - P.b);
    const parts = [`<line class="grid" x1="${P.l}" x2="${W - P.r}" y1="${sy(0)}" y2="${sy(0)}"/>`,
      `<text class="tick" x="${P.l - 6}" y="${sy(y1) + 8}" text-anchor="end">${esc(pct(y1))}</text>`,
      `<text class="tick" x="${P.l - 6}" y="${sy(0) + 4}" text-anchor="end">0</text>`,
      `<text class="tick" x="${P.l - 6}" y="${sy(y0)}" text-anchor="end">${esc(pct(y0))}</text>`];
    [...new Set(history.map((h) => h.variant))].forEach((variant, i) => {
      const rows = history.filter((h) => h.variant === variant && Number.isFinite(h.cs_low) && Number.isFinite(h.cs_high));
      if (!rows.length) return;
      const color = COLORS[i % COLORS.length];
      const band = rows.map((h) => `${sx(h.at)},${sy(h.cs_high)}`).concat(rows.slice().reverse().map((h) => `${sx(h.at)},${sy(h.cs_low)}`));
      parts.push(`<polygon points="${band.join(" ")}" fill="${color}" fill-opacity="0.15"/>`);
      parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${rows.map((h) => `${sx(h.at)},${sy(h.relative)}`).join(" ")}"/>`);
      parts.push(`<text class="tick" x="${W - P.r}" y="${sy(rows[rows.length - 1].relative) - 6}" text-anchor="end" fill="${color}">${esc(variant)}</text>`);
    });
    parts.push(`<text class="tick" x="${P.l}" y="${H - 6}">${esc(Charts.clock(x0))}</text>`,
      `<text class="tick" x="${W - P.r}" y="${H - 6}" text-anchor="end">${esc(Charts.clock(x1))}</text>`);
    return `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="Relative lift and its confidence sequence">${parts.join("")}</svg>`;
  }

  async function renderList(view, api) {
    const hash = location.hash;
    const rows = await api("GET", "/api/v1/experiments");
    if (location.hash !== hash) return;  // the reader moved on while this loaded: draw nothing over the new page
    const body = rows.map((e) => `<tr><td><a href="#/experiments/${encodeURIComponent(e.name)}">${esc(e.name)}</a></td>` +
      `<td><span class="tag">${esc(e.status)}</span></td><td>${esc(e.spec.flag ? "flag " + e.spec.flag : "route")}</td>` +
      `<td>${esc(e.spec.variants.join(", "))}</td><td>${esc(e.spec.primary.name)}</td><td>${esc(e.spec.owner)}</td></tr>`).join("");
    view.innerHTML = `<h1>Experiments</h1>` + (rows.length
      ? `<table class="table" id="experiments"><thead><tr><th>Name</th><th>Status</th><th>On</th><th>Variants</th><th>Primary metric</th><th>Owner</th></tr></thead><tbody>${body}</tbody></table>`
      : `<div class="empty">No experiments yet: <code>rollwise experiments create -f spec.yaml</code></div>`);
  }

  async function renderOne(view, api, name) {
    const path = `/api/v1/experiments/${encodeURIComponent(name)}`;
    const hash = location.hash;
    const e = await api("GET", path);
    if (location.hash !== hash) return;
    const r = e.readout;
    const counts = Object.entries(r.counts).map(([v, n]) => `${esc(v)} ${num(n)} (planned ${Math.round(r.srm.expected[v] * 100)}%)`).join(" · ");
    const metricRows = r.metrics.flatMap((m) => (m.comparisons.length ? m.comparisons : [null]).map((c) => (c === null
      ? `<tr><td>${esc(m.name)}</td><td>${esc(m.role)}</td><td colspan="6" class="muted">${esc(m.note || "")}</td></tr>`
      : `<tr class="${c.breach ? "bad" : ""}"><td>${esc(m.name)}${m.cuped ? " (CUPED)" : ""}</td><td>${esc(m.role)}</td><td>${esc(c.variant)}</td>` +
        `<td class="num">${num(c.subjects)}</td><td class="num">${pct(c.relative)}</td><td class="num">[${pct(c.cs_low)}, ${pct(c.cs_high)}]</td>` +
        `<td class="num">[${pct(c.fixed_low)}, ${pct(c.fixed_high)}]</td><td>${c.breach ? "breach" : c.better === true ? "better" : c.better === false ? "worse" : "undecided"}</td></tr>`))).join("");
    view.innerHTML = `<h1>${esc(e.name)} <span class="tag" id="decision">${esc(r.decision)}</span></h1>
      <p id="reason">${esc(r.reason)}</p>
      <dl class="facts"><dt>Hypothesis</dt><dd>${esc(e.spec.hypothesis)}</dd><dt>Owner</dt><dd>${esc(e.spec.owner)}</dd>
      <dt>Status</dt><dd>${esc(e.status)}${e.stop_reason ? " — " + esc(e.stop_reason) : ""}</dd>
      <dt>Subjects</dt><dd id="counts">${counts}</dd>
      <dt>Sample ratio</dt><dd id="srm">${esc(r.srm.status)} (e-value ${num(r.srm.e_value)}, halts at ${num(r.srm.threshold)})</dd>
      <dt>Decision rule</dt><dd>${esc(r.rule)}; α ${num(r.alpha)}, each comparison ${num(r.comparison_alpha)}</dd></dl>
      <h2>${esc(e.spec.primary.name)}: lift over time</h2><div id="lift-chart"><div class="chart-empty">Reading the experiment at earlier times…</div></div>
      <h2>Metrics</h2><table class="table" id="metrics"><thead><tr><th>Metric</th><th>Role</th><th>Variant</th><th>n</th><th>Lift</th>
      <th>Confidence sequence</th><th>Fixed-horizon t</th><th>Verdict</th></tr></thead><tbody>${metricRows}</tbody></table>`;
    // the chart re-reads the experiment at several earlier times: it follows the readout, never delays it
    const history = await api("GET", `${path}/history?points=10`);
    const chart = document.getElementById("lift-chart");
    if (chart && location.hash === hash) chart.innerHTML = liftChart(history);
  }

  async function render(view, api, showError, name) {
    try {
      if (name) await renderOne(view, api, name);
      else await renderList(view, api);
    } catch (err) {
      view.innerHTML = `<div class="empty">Could not load experiments.</div>`;
      showError(err);
    }
  }

  return { render };
})();
