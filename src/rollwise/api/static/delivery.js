// The delivery-metrics page: per service, DORA's four figures with their bands, then their trends.
// Reads GET /api/v1/metrics; every number on screen is turned into words a person reads at a glance
// (durations, rates, dates), and every definition sits on hover or in the footnote.
"use strict";

const Delivery = (() => {
  const esc = Charts.esc;
  const RANGES = [["7", "Last 7 days"], ["30", "Last 30 days"], ["90", "Last 90 days"], ["", "All history"]];
  const BUCKET = { 86400: "day", 604800: "week", 2592000: "30 days" };
  const COLORS = { ok: "#059669", failed: "#dc2626", line: "#2563eb" };
  const state = { days: "30", scope: "" };

  // ---------------------------------------------------------------- words for numbers

  const trim = (v, digits = 1) => Number(v.toFixed(digits)).toLocaleString();
  const plural = (n, one, many) => `${trim(n)} ${Math.abs(n - 1) < 1e-9 ? one : many}`;

  function duration(s) {
    if (s === null || s === undefined || !Number.isFinite(s)) return "–";
    if (s < 1) return s > 0 ? "under 1 s" : "0 s";
    if (s < 60) return `${Math.round(s)} s`;
    const minutes = Math.round(s / 60);
    if (minutes < 60) return `${minutes} min`;
    const hours = Math.floor(minutes / 60), rest = minutes % 60;
    if (hours < 24) return rest ? `${hours} h ${rest} min` : `${hours} h`;
    const days = Math.floor(hours / 24), h = hours % 24;
    if (days < 7) return h ? `${plural(days, "day", "days")} ${h} h` : plural(days, "day", "days");
    return plural(Math.round(s / 86400), "day", "days");
  }

  function shortDuration(s) {  // for chart axes, where "1 h 53 min" does not fit
    if (s < 60) return `${Math.round(s)} s`;
    if (s < 3600) return `${trim(s / 60, 0)} min`;
    if (s < 86400) return `${trim(s / 3600)} h`;
    return `${trim(s / 86400)} d`;
  }

  // a round duration above the largest value, so the axis reads 15 min, 30 min, 45 min, 1 h
  const AXIS_TOPS = [60, 300, 600, 1800, 3600, 7200, 4 * 3600, 8 * 3600, 12 * 3600, 86400, 2 * 86400, 4 * 86400,
    7 * 86400, 14 * 86400, 28 * 86400, 56 * 86400, 112 * 86400];

  function durationAxis(values) {
    const top = Math.max(0, ...values.filter((v) => v !== null && Number.isFinite(v))) * 1.1;
    return AXIS_TOPS.find((t) => t >= top) || top;
  }

  function rate(perDay) {
    if (perDay === null || perDay === undefined) return "–";
    if (perDay === 0) return "none";
    if (perDay >= 1) return `${trim(perDay)} a day`;
    if (perDay * 7 >= 1) return `${trim(perDay * 7)} a week`;
    return `${trim(perDay * 30)} a month`;
  }

  const percent = (v) => (v === null || v === undefined ? "–" : `${trim(v * 100, v < 0.1 && v > 0 ? 1 : 0)}%`);
  const day = (ts) => new Date(ts * 1000).toLocaleDateString(undefined, { day: "numeric", month: "short" });
  const dayTime = (ts) => new Date(ts * 1000).toLocaleString(undefined,
    { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
  const dateLong = (ts) => new Date(ts * 1000).toLocaleDateString(undefined,
    { day: "numeric", month: "short", year: "numeric" });

  // ---------------------------------------------------------------- the four figures

  const FIGURES = [
    { key: "deployment_frequency", label: "Deployment frequency",
      value: (m) => m.deployment_frequency_per_day, show: rate,
      note: (m) => plural(m.succeeded, "successful release", "successful releases") },
    { key: "lead_time", label: "Lead time for changes",
      value: (m) => m.lead_time_s.median, show: duration,
      note: (m) => (m.lead_time_s.count ? `median of ${plural(m.lead_time_s.count, "release", "releases")} with a commit time`
                                         : "no release carried a commit time"),
      point: (p) => p.lead_time_median_s, pointShow: shortDuration, series: "median lead time" },
    { key: "change_failure_rate", label: "Change failure rate",
      value: (m) => m.change_failure_rate, show: percent,
      note: (m) => `${m.failed} of ${plural(m.releases_ended, "release", "releases")} failed`,
      point: (p) => p.change_failure_rate, pointShow: percent, series: "change failure rate" },
    { key: "recovery_time", label: "Time to restore",
      value: (m) => m.recovery_time_s.median, show: duration,
      note: (m) => (m.recovery_time_s.count ? `median of ${plural(m.recovery_time_s.count, "failure", "failures")}` : "no failed release"),
      point: (p) => p.recovery_time_median_s, pointShow: shortDuration, series: "median time to restore" },
  ];

  function bandsText(data, key) {
    return Object.entries(data.bands[key] || {}).map(([band, text]) => `${band}: ${text}`).join("; ");
  }

  function hint(data, key) {
    return `${data.definitions[key] || ""}. DORA bands: ${bandsText(data, key)}.`;
  }

  function badge(data, key, band) {
    if (!band) return `<span class="band band-none" title="Not enough releases to place in a band">no band</span>`;
    return `<span class="band band-${esc(band)}" title="${esc(band)}: ${esc((data.bands[key] || {})[band] || "")}">${esc(band)}</span>`;
  }

  function figureCell(data, m, f) {
    return `<td class="figure" title="${esc(hint(data, f.key))}"><div class="figure-value">${esc(f.show(f.value(m)))} ` +
      `${badge(data, f.key, m.dora[f.key])}</div><div class="muted small">${esc(f.note(m))}</div></td>`;
  }

  function summaryRow(data, name, m) {
    const label = name ? esc(name) : "All services";
    return `<tr class="${state.scope === name ? "selected" : ""}" data-scope="${esc(name)}">` +
      `<th scope="row"><button type="button" class="linkish" data-scope="${esc(name)}" title="Show this scope's trends">${label}</button>` +
      `<div class="muted small">${esc(plural(m.releases_ended, "release ended", "releases ended"))}</div></th>` +
      FIGURES.map((f) => figureCell(data, m, f)).join("") + `</tr>`;
  }

  function summaryTable(data) {
    const rows = [summaryRow(data, "", data.overall),
      ...Object.entries(data.services).map(([name, m]) => summaryRow(data, name, m))];
    return `<table class="table dora" id="dora-summary"><thead><tr><th>Service</th>` +
      FIGURES.map((f) => `<th title="${esc(hint(data, f.key))}">${esc(f.label)}</th>`).join("") +
      `</tr></thead><tbody>${rows.join("")}</tbody></table>`;
  }

  // ---------------------------------------------------------------- trends

  function bars(points, bucketName) {
    const W = 560, H = 200, P = { l: 40, r: 10, t: 12, b: 28 };
    const top = Math.max(1, ...points.map((p) => p.succeeded + p.failed));
    const step = Math.max(1, Math.ceil(top / 4)), yMax = step * Math.ceil(top / step);
    const iw = W - P.l - P.r, ih = H - P.t - P.b, slot = iw / points.length, bw = Math.max(2, Math.min(36, slot * 0.7));
    const y = (v) => P.t + ih - (v / yMax) * ih;
    const parts = [];
    for (let v = 0; v <= yMax; v += step) {
      parts.push(`<line class="grid" x1="${P.l}" x2="${W - P.r}" y1="${y(v)}" y2="${y(v)}"/>`,
        `<text class="tick" x="${P.l - 6}" y="${y(v) + 4}" text-anchor="end">${v}</text>`);
    }
    const every = Math.ceil(points.length / 6);
    points.forEach((p, i) => {
      const x = P.l + slot * i + (slot - bw) / 2;
      const tip = `${dayTime(p.start)} – ${dayTime(p.end)}: ${p.succeeded} succeeded, ${p.failed} failed`;
      parts.push(`<g><title>${esc(tip)}</title>` +
        `<rect x="${x.toFixed(1)}" y="${y(p.succeeded).toFixed(1)}" width="${bw.toFixed(1)}" height="${(ih - (y(p.succeeded) - P.t)).toFixed(1)}" fill="${COLORS.ok}" rx="2"/>` +
        `<rect x="${x.toFixed(1)}" y="${y(p.succeeded + p.failed).toFixed(1)}" width="${bw.toFixed(1)}" height="${(y(p.succeeded) - y(p.succeeded + p.failed)).toFixed(1)}" fill="${COLORS.failed}" rx="2"/></g>`);
      if (i % every === 0 || i === points.length - 1) {
        parts.push(`<text class="tick" x="${(x + bw / 2).toFixed(1)}" y="${H - 8}" text-anchor="middle">${esc(day(p.end))}</text>`);
      }
    });
    return `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="releases per ${esc(bucketName)}">${parts.join("")}</svg>` +
      `<div class="legend"><span class="legend-item"><i style="background:${COLORS.ok}"></i>succeeded</span>` +
      `<span class="legend-item"><i style="background:${COLORS.failed}"></i>failed (rolled back or aborted)</span></div>`;
  }

  function trendChart(f, points, bucketName) {
    const series = [{ name: `${f.series}, per ${bucketName}`, color: COLORS.line,
      points: points.map((p) => [p.end, f.point(p)]) }];
    return Charts.line(series, { format: f.pointShow, xFormat: day, xMin: points[0].end, xMax: points[points.length - 1].end,
      yMax: f.key === "change_failure_rate" ? 1 : durationAxis(points.map(f.point)), title: f.label,
      empty: `No ${f.label.toLowerCase()} in this window` });
  }

  function trends(data) {
    const m = state.scope ? data.services[state.scope] : data.overall;
    if (!m) return `<div class="empty">No releases of ${esc(state.scope)} in this window.</div>`;
    const bucketName = BUCKET[data.bucket_s] || duration(data.bucket_s);
    const [deploys, ...rest] = FIGURES;
    return `<div class="grid-2x2">` +
      `<div title="${esc(hint(data, deploys.key))}"><h3>Releases per ${esc(bucketName)}</h3>${bars(m.trend, bucketName)}</div>` +
      rest.map((f) => `<div title="${esc(hint(data, f.key))}"><h3>${esc(f.label)} per ${esc(bucketName)}${f.key === "change_failure_rate" ? "" : " (median)"}</h3>` +
        trendChart(f, m.trend, bucketName) + `</div>`).join("") + `</div>`;
  }

  // ---------------------------------------------------------------- page

  function footnote(data) {
    const o = data.overall;
    const items = FIGURES.map((f) => `<dt>${esc(f.label)}</dt><dd>${esc(data.definitions[f.key] || "")}. ` +
      `<span class="muted">${esc(bandsText(data, f.key))}</span></dd>`);
    items.push(`<dt>Rollbacks</dt><dd>${esc(rate(o.rollback_frequency_per_day))} across all services (${esc(data.definitions.rollback_frequency || "")})</dd>`,
      `<dt>Observable releases</dt><dd>${esc(percent(o.release_observability))} (${esc(data.definitions.release_observability || "")})</dd>`);
    return `<dl class="facts footnote">${items.join("")}</dl>` +
      `<p class="muted small">Bands: ${esc(data.definitions.source || "DORA")}. ${esc(plural(data.in_progress, "release", "releases"))} still in progress ` +
      `(not counted until they end).</p>`;
  }

  function draw(el, data) {
    const window = `${dateLong(data.since)} – ${dateLong(data.until)}`;
    const scopeName = state.scope || "all services";
    if (data.overall.releases_ended === 0) {
      el.innerHTML = `<div class="card"><div class="empty">No release ended between ${esc(window)}.</div></div>`;
      return;
    }
    el.innerHTML = `<section class="card"><h2>The four keys <span class="muted small">${esc(window)} · hover a figure for its definition</span></h2>` +
      summaryTable(data) + `</section>` +
      `<section class="card"><h2>Trends <span class="muted small">${esc(scopeName)} · per ${esc(BUCKET[data.bucket_s] || duration(data.bucket_s))}</span></h2>` +
      `<div id="dora-trends">${trends(data)}</div></section>` +
      `<section class="card"><h2>What the figures mean</h2>${footnote(data)}</section>`;
    el.querySelectorAll("button[data-scope]").forEach((b) => b.addEventListener("click", () => {
      state.scope = b.dataset.scope;
      draw(el, data);
    }));
  }

  async function load(el, api, showError) {
    const params = state.days ? `?since_s=${Number(state.days) * 86400}` : "";
    try {
      const data = await api("GET", "/api/v1/metrics" + params);
      if (state.scope && !data.services[state.scope]) state.scope = "";
      draw(el, data);
    } catch (err) {
      el.innerHTML = `<div class="card"><div class="empty">${esc(err.status === 503 ? err.message : "Could not load metrics: " + err.message)}</div></div>`;
      if (err.status !== 503) showError(err);
    }
  }

  async function render(view, api, showError) {
    view.innerHTML = `<section class="page-head"><h1>Delivery metrics</h1>` +
      `<p class="muted">How often releases ship, how fast, how often they fail and how fast service comes back, ` +
      `from this store's rollouts, each placed in DORA's bands.</p>` +
      `<label class="range">Window <select id="dora-range">${RANGES.map(([v, text]) =>
        `<option value="${v}"${v === state.days ? " selected" : ""}>${esc(text)}</option>`).join("")}</select></label></section>` +
      `<div id="metrics"><div class="loading">Loading…</div></div>`;
    const el = document.getElementById("metrics");
    document.getElementById("dora-range").addEventListener("change", (e) => {
      state.days = e.target.value;
      load(el, api, showError);
    });
    await load(el, api, showError);
  }

  return { render };
})();
