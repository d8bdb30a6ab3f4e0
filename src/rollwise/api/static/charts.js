// Hand-written SVG line charts: no library, no build step, works offline.
"use strict";

const Charts = (() => {
  const W = 560, H = 200, PAD = { l: 52, r: 14, t: 14, b: 28 };

  function esc(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const exp = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (value <= step * exp) return step * exp;
    }
    return 10 * exp;
  }

  function clock(ts) {
    const d = new Date(ts * 1000);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function dayHour(ts) {
    return new Date(ts * 1000).toLocaleString([], { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
  }

  // series: [{name, color, points: [[x, y], ...], step: bool, dashed: bool}]; opts: format, xFormat, xMin, xMax, yMax, until, title, empty
  function line(series, opts = {}) {
    const fmt = opts.format || ((v) => String(Math.round(v * 100) / 100));
    const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null && Number.isFinite(p[1])));
    if (all.length === 0) {
      return `<div class="chart-empty">${esc(opts.empty || "No observations yet")}</div>`;
    }
    let x0 = opts.xMin !== undefined ? opts.xMin : Math.min(...all.map((p) => p[0]));
    let x1 = opts.xMax !== undefined ? opts.xMax : Math.max(...all.map((p) => p[0]));
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    // time of day for a chart within a day; the date with the hour once it spans more than that
    const xfmt = opts.xFormat || (x1 - x0 > 20 * 3600 ? dayHour : clock);
    const yMax = opts.yMax !== undefined ? opts.yMax : niceMax(Math.max(...all.map((p) => p[1])) * 1.1);
    const iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
    const sx = (x) => PAD.l + ((x - x0) / (x1 - x0)) * iw;
    const sy = (y) => PAD.t + ih - (Math.min(y, yMax) / yMax) * ih;
    const parts = [];
    for (let i = 0; i <= 4; i++) {
      const v = (yMax * i) / 4, y = sy(v);
      parts.push(`<line class="grid" x1="${PAD.l}" x2="${W - PAD.r}" y1="${y}" y2="${y}"/>`);
      parts.push(`<text class="tick" x="${PAD.l - 6}" y="${y + 4}" text-anchor="end">${esc(fmt(v))}</text>`);
    }
    for (let i = 0; i <= 3; i++) {
      const x = x0 + ((x1 - x0) * i) / 3;
      const anchor = i === 0 ? "start" : i === 3 ? "end" : "middle";  // the edge labels stay inside the chart
      parts.push(`<text class="tick" x="${sx(x)}" y="${H - 8}" text-anchor="${anchor}">${esc(xfmt(x))}</text>`);
    }
    for (const s of series) {
      const pts = s.points.filter((p) => p[1] !== null && Number.isFinite(p[1]));
      if (pts.length === 0) continue;
      let d = "";
      pts.forEach((p, i) => {
        const x = sx(p[0]).toFixed(1), y = sy(p[1]).toFixed(1);
        if (i === 0) d += `M${x},${y}`;
        else if (s.step) d += `H${x}V${y}`;
        else d += `L${x},${y}`;
      });
      if (s.step && opts.until) d += `H${sx(Math.max(opts.until, pts[pts.length - 1][0])).toFixed(1)}`;
      parts.push(`<path class="series${s.dashed ? " dashed" : ""}" d="${d}" stroke="${s.color}"/>`);
      if (!s.step) {
        for (const p of pts) {
          parts.push(`<circle cx="${sx(p[0]).toFixed(1)}" cy="${sy(p[1]).toFixed(1)}" r="2.6" fill="${s.color}">` +
            `<title>${esc(s.name)} ${esc(xfmt(p[0]))}: ${esc(fmt(p[1]))}</title></circle>`);
        }
      }
    }
    const legend = series.map((s) =>
      `<span class="legend-item"><i style="background:${s.color}"></i>${esc(s.name)}</span>`).join("");
    return `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(opts.title || "chart")}">` +
      parts.join("") + `</svg><div class="legend">${legend}</div>`;
  }

  return { line, esc, clock };
})();
