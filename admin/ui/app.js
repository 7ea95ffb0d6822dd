// The sluice status page: polls the admin API every second and draws each
// target's state, breaker, lag and a live lag chart. No build step, no
// dependencies.
"use strict";

const HISTORY = 120; // samples kept per target for the chart
const lagSamples = {}; // target → [{t, lag}]
const last = {};     // target → {state, breaker}

// token is the admin token: from #token= in the address (then kept in this
// tab only), else the one kept. It throws, saying why, when the address
// holds one that cannot be decoded: a stray "%" would otherwise end poll
// before its first request, and the page would say "connecting…" for ever.
function token() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    window.history.replaceState(null, "", location.pathname); // keep it out of the address bar
    let t;
    try {
      t = decodeURIComponent(m[1]);
    } catch {
      sessionStorage.removeItem("sluice-admin-token"); // the address asked for another token than the one kept
      throw new Error("The #token= in the address is not URL-encoded (a % must start %XX): enter the admin token below.");
    }
    sessionStorage.setItem("sluice-admin-token", t);
  }
  return sessionStorage.getItem("sluice-admin-token");
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("data-") || k === "class") e.setAttribute(k, v); else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function badge(text) { return el("span", { class: "badge " + text }, text); }

function note(text) {
  const li = el("li", {}, new Date().toLocaleTimeString() + " " + text);
  document.getElementById("changes").prepend(li);
}

function drawChart(canvas, samples) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const peak = Math.max(10, ...samples.map(s => s.lag ?? 0));
  ctx.strokeStyle = "#eceef2";
  ctx.beginPath(); ctx.moveTo(0, h - 0.5); ctx.lineTo(w, h - 0.5); ctx.stroke();
  ctx.strokeStyle = "#3a6ff7"; ctx.lineWidth = 2; ctx.beginPath();
  let drawing = false; // an unknown lag leaves a gap, never a 0
  samples.forEach((s, i) => {
    if (s.lag === null) { drawing = false; return; }
    const x = (i / (HISTORY - 1)) * w, y = h - 4 - (s.lag / peak) * (h - 12);
    drawing ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
    drawing = true;
  });
  ctx.stroke();
  ctx.fillStyle = "#6b7385"; ctx.font = "11px system-ui";
  ctx.fillText("lag (messages), peak " + peak, 6, 12);
}

function render(views) {
  const main = document.getElementById("targets");
  main.replaceChildren();
  for (const v of views) {
    const prev = last[v.target];
    if (prev && prev.state !== v.state) note(`${v.target}: ${prev.state} → ${v.state}`);
    if (prev && prev.breaker !== v.breaker) note(`${v.target}: breaker ${prev.breaker} → ${v.breaker}`);
    last[v.target] = { state: v.state, breaker: v.breaker };

    const samples = (lagSamples[v.target] ||= []);
    samples.push({ t: Date.now(), lag: v.lag_unknown ? null : v.lag_messages });
    if (samples.length > HISTORY) samples.shift();

    const parts = el("table", {}, el("tr", {}, ...["partition", "applied to", "log end", "lag", "lag s"].map(h => el("th", {}, h))));
    for (const p of v.partitions) {
      parts.append(el("tr", {}, el("td", {}, p.partition), el("td", {}, p.applied), el("td", {}, p.log_end),
        el("td", {}, p.lag_unknown ? "unknown" : p.lag_messages), el("td", {}, p.lag_seconds.toFixed(1))));
    }
    const canvas = el("canvas", { width: 420, height: 120 });
    const card = el("section", { class: "target", "data-target": v.target, "data-state": v.state, "data-breaker": v.breaker },
      el("h2", {}, v.target, badge(v.state), el("span", { class: "badge " + v.breaker }, "breaker " + v.breaker),
        el("span", { class: "muted" }, "applier " + v.applier)),
      el("div", { class: "figures" },
        el("div", { class: "figure" }, el("b", { class: "lag-messages" }, v.lag_unknown ? "unknown" : v.lag_messages),
          v.lag_unknown ? "lag: log moved on partitions " + v.lag_unknown.join(", ") : "messages behind"),
        el("div", { class: "figure" }, el("b", {}, v.lag_seconds.toFixed(1) + " s"), "oldest unapplied"),
        el("div", { class: "figure" }, el("b", {}, Math.round(v.apply_rate)), "applied / s")),
      el("div", { class: "row" }, canvas, parts));
    for (const b of v.blocking_sessions || []) {
      card.append(el("div", { class: "blocking" },
        el("b", {}, `Blocked by pid ${b.pid}`), ` (${b.application || "?"}, ${b.state} for ${Math.round(b.state_age_seconds)} s): ${b.why}. `,
        el("code", {}, `SELECT pg_terminate_backend(${b.pid});`)));
    }
    for (const r of v.replicas || []) {
      if (r.blocker_policy_cannot_act) card.append(el("p", { class: "error" }, "blocker policy cannot act: " + r.blocker_policy_cannot_act));
      for (const b of r.blockers || []) {
        card.append(el("div", { class: "blocker-action " + b.action.replace(" ", "-") },
          el("b", {}, `${b.action === "ended" ? "Ended" : b.action === "reported" ? "Would end" : b.action === "spared" ? "Spared" : "Could not end"} pid ${b.pid}`),
          ` at ${new Date(b.at).toLocaleTimeString()} (${b.user}, ${b.application || "?"}, ${b.state}, transaction open ${Math.round(b.transaction_age_ns / 1e9)} s; held ${b.locks})`,
          b.why ? `: ${b.why}` : ""));
      }
    }
    if (v.database_error) card.append(el("p", { class: "error" }, "database: " + v.database_error));
    main.append(card);
    drawChart(canvas, samples);
  }
}

async function poll() {
  const login = document.getElementById("login"), error = document.getElementById("error");
  let t;
  try {
    t = token();
  } catch (e) {
    error.textContent = e.message; error.hidden = false; login.hidden = false;
    return;
  }
  if (!t) { login.hidden = false; return; }
  try {
    const r = await fetch("/v1/admin/targets", { headers: { Authorization: "Bearer " + t } });
    if (r.status === 401) {
      sessionStorage.removeItem("sluice-admin-token");
      error.textContent = "That admin token was refused."; error.hidden = false; login.hidden = false;
      return;
    }
    const body = await r.json();
    if (!r.ok) throw new Error((body.errors || []).map(e => e.error).join("; ") || r.statusText);
    error.hidden = true;
    render(body);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    error.textContent = "Cannot read status: " + e.message; error.hidden = false;
  }
  setTimeout(poll, 1000);
}

document.getElementById("login").addEventListener("submit", ev => {
  ev.preventDefault();
  sessionStorage.setItem("sluice-admin-token", document.getElementById("token").value);
  document.getElementById("login").hidden = true;
  poll();
});
poll();
