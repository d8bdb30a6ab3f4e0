// The fleet page: every Envoy on the ADS server by region (connected or not, which flavour of xDS, the
// routes it serves, any it refused) and every controller sharing the store with the rollouts it holds.
// An Envoy serving an older revision of a rollout than the rest of the fleet is marked "behind".
// Reads GET /api/v1/fleet/envoys and /api/v1/fleet/controllers.
"use strict";

const Fleet = (() => {
  const esc = Charts.esc;
  const FLAVOUR = { sotw: "state of the world", delta: "incremental" };

  function seenText(seconds) {
    if (!Number.isFinite(seconds)) return "never";
    if (seconds < 2) return "just now";
    if (seconds < 120) return `${Math.round(seconds)} s ago`;
    if (seconds < 3570) return `${Math.round(seconds / 60)} min ago`;
    return `${Math.round(seconds / 3600)} h ago`;
  }

  function envoyState(e) {
    if (e.live) return ["connected", "phase-succeeded"];
    return e.connected ? ["stale", "phase-paused"] : ["gone", "phase-aborted"];
  }

  // Per rollout, the newest revision any live Envoy serves: an Envoy below it is behind the fleet.
  function newest(envoys) {
    const top = {};
    for (const e of envoys.filter((x) => x.live)) {
      for (const [name, rev] of Object.entries(e.confirmed)) top[name] = Math.max(top[name] ?? rev, rev);
    }
    return top;
  }

  function routesHtml(e, top) {
    const names = Object.keys(e.confirmed).sort();
    if (!names.length) return `<span class="muted">none yet</span>`;
    return names.map((name) => {
      const rev = e.confirmed[name];
      const behind = e.live && rev < top[name];
      return `<span class="route${behind ? " behind" : ""}">${esc(name)} at revision ${rev}` +
        `${behind ? ` (behind: the fleet serves ${top[name]})` : ""}</span>`;
    }).join(" ");
  }

  function envoyRows(e, top) {
    const [state, badge] = envoyState(e);
    const row = `<tr data-envoy="${esc(e.node_id)}"><td>${esc(e.node_id)}</td><td>${esc(e.zone || "–")}</td>` +
      `<td><span class="badge ${badge}">${state}</span></td><td>${esc(FLAVOUR[e.protocol] || e.protocol || "–")}</td>` +
      `<td>${esc(seenText(e.seen_ago))}</td><td>${routesHtml(e, top)}</td></tr>`;
    if (!Object.keys(e.nacked).length) return row;
    const refused = Object.entries(e.nacked).map(([name, rev]) => `${esc(name)} at revision ${rev}`).join(", ");
    return row + `<tr class="nack-row"><td></td><td colspan="5" class="metrics-error">refused ${refused}: ` +
      `${esc(e.nack_message || "no message")}</td></tr>`;
  }

  function summary(envoys, controllers) {
    const live = envoys.filter((e) => e.live).length;
    const nacking = envoys.filter((e) => Object.keys(e.nacked).length).length;
    const top = newest(envoys);
    const behind = envoys.filter((e) => e.live && Object.entries(e.confirmed).some(([n, r]) => r < top[n])).length;
    const alive = controllers.filter((c) => c.alive).length;
    const tile = (id, big, label, bad) =>
      `<div class="tile" id="${id}"><div class="big${bad ? " metrics-error" : ""}">${big}</div><div class="muted">${label}</div></div>`;
    return `<div class="tiles" id="fleet-summary">` +
      tile("fleet-connected", `${live} of ${envoys.length}`, "Envoys connected", live < envoys.length) +
      tile("fleet-nacking", nacking, nacking === 1 ? "Envoy refusing a route" : "Envoys refusing a route", nacking > 0) +
      tile("fleet-behind", behind, behind === 1 ? "Envoy behind the fleet" : "Envoys behind the fleet", behind > 0) +
      tile("fleet-controllers", `${alive} of ${controllers.filter((c) => c.id).length}`, "controllers alive", false) +
      `</div>`;
  }

  function envoysHtml(envoys) {
    if (!envoys.length) {
      return `<div class="empty">No Envoy has connected to an ADS server of this store. Start one with ` +
        `<code>rollwise serve --ads-listen HOST:PORT</code> and point Envoys at it (<code>rollwise fleet bootstrap</code>).</div>`;
    }
    const top = newest(envoys);
    const regions = [...new Set(envoys.map((e) => e.region || ""))].sort();
    return regions.map((region) => {
      const members = envoys.filter((e) => (e.region || "") === region);
      return `<h3>${region ? `Region ${esc(region)}` : "No region"} · ${members.filter((e) => e.live).length} of ` +
        `${members.length} connected</h3><table class="table fleet-envoys"><thead><tr><th>Envoy</th><th>Zone</th>` +
        `<th>State</th><th>xDS</th><th>Last heard</th><th>Routes it serves</th></tr></thead><tbody>` +
        members.map((e) => envoyRows(e, top)).join("") + `</tbody></table>`;
    }).join("");
  }

  function controllersHtml(controllers) {
    if (!controllers.length) return `<div class="empty">No controller has run on this store.</div>`;
    return `<table class="table" id="fleet-controllers-table"><thead><tr><th>Controller</th><th>State</th>` +
      `<th>Last heard</th><th>Rollouts it holds</th></tr></thead><tbody>` +
      controllers.map((c) => {
        const held = c.leases.map((l) => esc(l.rollout)).join(", ") || `<span class="muted">none</span>`;
        if (!c.id) return `<tr><td class="muted" colspan="3">held by no one now (ended, or waiting for a controller)</td>` +
          `<td>${held}</td></tr>`;
        return `<tr><td>${esc(c.id)}</td><td><span class="badge ${c.alive ? "phase-succeeded" : "phase-aborted"}">` +
          `${c.alive ? "alive" : "gone"}</span></td><td>${esc(seenText(c.seen_ago))}</td><td>${held}</td></tr>`;
      }).join("") + `</tbody></table>`;
  }

  async function render(view, api, showError) {
    const hash = location.hash;
    view.innerHTML = `<div class="loading">Loading…</div>`;
    try {
      const [envoys, controllers] = await Promise.all([api("GET", "/api/v1/fleet/envoys"),
        api("GET", "/api/v1/fleet/controllers")]);
      if (location.hash !== hash) return;  // the reader moved on while this loaded
      view.innerHTML = `<section class="page-head"><h1>Fleet</h1><p class="muted">The Envoys that take their ` +
        `routes from this store, by region, and the controllers that share it.</p></section>` +
        `<div class="card">${summary(envoys, controllers)}</div>` +
        `<div class="card" id="fleet-envoys"><h2>Envoys</h2>${envoysHtml(envoys)}</div>` +
        `<div class="card" id="fleet-controllers"><h2>Controllers</h2>${controllersHtml(controllers)}</div>`;
    } catch (err) {
      if (location.hash !== hash) return;
      view.innerHTML = `<div class="card"><div class="empty">${esc("Could not load the fleet: " + err.message)}</div></div>`;
      showError(err);
    }
  }

  return { render };
})();
