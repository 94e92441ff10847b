// goray dashboard: one page, a view per hash route (#/jobs, #/actors/<id>,
// ...). List views follow /api/stream (server-sent events) and render
// each topic as it changes; detail views poll their /api/ resource and
// follow what streams (a job's output).
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
const short = id => esc((id || "").slice(0, 8));
function bytes(n) {
  n = Number(n || 0);
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function when(t) {
  if (!t || t.startsWith("0001")) return "";
  const d = new Date(t);
  return d.toLocaleString();
}
function duration(a, b) {
  if (!a || a.startsWith("0001")) return "";
  const end = b && !b.startsWith("0001") ? new Date(b) : new Date();
  let s = Math.max(0, (end - new Date(a)) / 1000);
  if (s < 1) return (s * 1000).toFixed(0) + " ms";
  if (s < 120) return s.toFixed(1) + " s";
  if (s < 7200) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}
const badge = st => `<span class="badge st-${esc(String(st).toLowerCase())}">${esc(st)}</span>`;
function table(cols, rows, empty) {
  if (!rows.length) return `<p class="empty">${esc(empty || "None.")}</p>`;
  return `<table><thead><tr>${cols.map(c => `<th>${esc(c)}</th>`).join("")}</tr></thead><tbody>` +
    rows.map(r => `<tr>${r.map(c => `<td>${c}</td>`).join("")}</tr>`).join("") + "</tbody></table>";
}
// isGroupResource: the resources a placement group's bundles make
// (CPU_group_<id>, bundle_group_<i>_<id>), which only its tasks use.
const isGroupResource = k => /_group_/.test(k);
function resources(m) {
  return Object.keys(m || {}).sort().map(k => `${esc(k)} ${+Number(m[k]).toFixed(3)}`).join(", ");
}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin", headers: { Accept: "application/json" } }, opts));
  if (r.status === 401) { location.href = "/login"; throw new Error("logged out"); }
  const text = await r.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  if (!r.ok) throw new Error((body && body.error) || r.statusText);
  return body;
}
function post(path) { return api(path, { method: "POST" }); }

// --- live connection ---

let source = null;
let poller = null;
let logSource = null;
let stopLive = function () {
  if (source) { source.close(); source = null; }
  if (poller) { clearInterval(poller); poller = null; }
  if (logSource) { logSource.close(); logSource = null; }
};
function setLive(ok, text) {
  const el = $("#live");
  el.textContent = text;
  el.className = "live " + (ok ? "on" : "off");
}
function follow(topics, handlers) {
  source = new EventSource("/api/stream?topics=" + encodeURIComponent(topics.join(",")));
  source.onopen = () => setLive(true, "live");
  source.onerror = () => setLive(false, "reconnecting");
  for (const t of topics) {
    source.addEventListener(t, ev => {
      const data = JSON.parse(ev.data);
      setLive(true, "live");
      handlers[t](data);
    });
  }
}
function every(ms, f) { f(); poller = setInterval(f, ms); }

// --- charts: small SVG line charts, no library ---

const palette = ["#2f7ed8", "#e4572e", "#29a36a", "#a05cd6", "#f2a541", "#17becf", "#8c564b", "#d62728"];
function lineChart(title, series, fmt, floor) {
  // series: [{name, points: [[t, v], ...]}]; floor: the least top of the
  // value axis, so an idle cluster's chart is flat at the bottom.
  const W = 460, H = 170, L = 66, B = 22, T = 20;
  const all = series.flatMap(s => s.points);
  if (!all.length) return `<figure class="chart"><figcaption>${esc(title)}</figcaption><p class="empty">No samples yet.</p></figure>`;
  const t0 = Math.min(...all.map(p => p[0])), t1 = Math.max(...all.map(p => p[0]), t0 + 1);
  const vmax = Math.max(...all.map(p => p[1]), floor || 1) * 1.1;
  const x = t => L + (t - t0) / (t1 - t0) * (W - L - 8), y = v => T + (1 - v / vmax) * (H - T - B);
  const lines = series.map((s, i) => s.points.length === 1
    ? `<circle r="2.5" fill="${palette[i % palette.length]}" cx="${x(s.points[0][0]).toFixed(1)}" cy="${y(s.points[0][1]).toFixed(1)}"/>`
    : `<polyline fill="none" stroke="${palette[i % palette.length]}" stroke-width="1.6" points="${s.points.map(p => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ")}"/>`).join("");
  const grid = [0, 0.5, 1].map(f => `<line x1="${L}" x2="${W - 8}" y1="${y(vmax * f / 1.1)}" y2="${y(vmax * f / 1.1)}" class="grid"/><text x="${L - 4}" y="${y(vmax * f / 1.1) + 4}" text-anchor="end">${esc(fmt(vmax * f / 1.1))}</text>`).join("");
  const secs = (t1 - t0) / 1000, span = secs < 120 ? secs.toFixed(0) + " s" : (secs / 60).toFixed(0) + " min";
  const legend = series.map((s, i) => `<span><i class="sw c${i % palette.length}"></i>${esc(s.name)}</span>`).join("");
  return `<figure class="chart"><figcaption>${esc(title)}</figcaption><svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">${grid}${lines}<text x="${L}" y="${H - 4}">${span} ago</text><text x="${W - 8}" y="${H - 4}" text-anchor="end">now</text></svg><div class="legend">${legend}</div></figure>`;
}
function charts(history) {
  const ts = s => new Date(s.time).getTime();
  const nodes = [...new Set(history.flatMap(s => (s.nodes || []).map(n => n.node_id)))];
  const perNode = f => nodes.map(id => ({ name: id.slice(0, 8), points: history.flatMap(s => (s.nodes || []).filter(n => n.node_id === id).map(n => [ts(s), f(n)])) }));
  // perNodeRate turns a counter into a rate between samples.
  const perNodeRate = f => perNode(f).map(s => ({ name: s.name, points: s.points.slice(1).map((p, i) => [p[0], Math.max(0, p[1] - s.points[i][1]) / Math.max(1e-3, (p[0] - s.points[i][0]) / 1000)]) }));
  const rates = ["FINISHED", "FAILED"].map(st => ({ name: st.toLowerCase() + "/s", points: history.map(s => [ts(s), (s.task_rates || {})[st] || 0]) }));
  const running = [{ name: "running", points: history.map(s => [ts(s), (s.tasks || {}).RUNNING || 0]) }, { name: "waiting", points: history.map(s => [ts(s), ((s.tasks || {}).SUBMITTED || 0) + ((s.tasks || {}).PENDING_ARGS || 0)]) }];
  return `<div class="charts">` +
    lineChart("Tasks per second", rates, v => v.toFixed(v < 10 ? 1 : 0), 1) +
    lineChart("Tasks running and waiting", running, v => v.toFixed(v < 10 ? 1 : 0), 1) +
    lineChart("CPU busy per node (machine)", perNode(n => 100 * (n.cpu_busy || 0)), v => v.toFixed(0) + "%", 100) +
    lineChart("Memory per node", perNode(n => n.memory_used_bytes || 0), bytes, 1 << 30) +
    lineChart("CPUs leased per node", perNode(n => n.cpu_used), v => v.toFixed(1), 1) +
    lineChart("Object store per node", perNode(n => n.store_used_bytes), bytes, 1 << 20) +
    lineChart("Objects received per node (per second)", perNodeRate(n => n.transfer_bytes_received || 0), v => bytes(v) + "/s", 1 << 20) +
    `</div>`;
}

// --- views ---

const views = {};

views.overview = main => {
  let history = [];
  main.innerHTML = `<h1>Overview</h1><div id="cards" class="cards"></div><div id="charts"></div><div class="cols"><section id="demands"></section><section id="failures"></section></div>`;
  const draw = () => { $("#charts").innerHTML = charts(history); };
  api("/api/history").then(h => { history = h; draw(); }).catch(() => {});
  follow(["overview", "history"], {
    overview: o => {
      if (o.error) { $("#cards").innerHTML = `<p class="error">${esc(o.error)}</p>`; return; }
      const cpu = o.resources.CPU || { total: 0, used: 0 };
      const card = (k, v, sub) => `<div class="card"><div class="k">${esc(k)}</div><div class="v">${v}</div><div class="sub">${sub || ""}</div></div>`;
      $("#cards").innerHTML =
        card("Nodes", `<span id="nodes-alive">${o.nodes.alive}</span> alive`, o.nodes.dead ? `${o.nodes.dead} dead` : "none dead") +
        card("CPUs in use", `${+cpu.used.toFixed(2)} / ${+cpu.total.toFixed(2)}`, resources(Object.fromEntries(Object.entries(o.resources).filter(([k]) => k !== "CPU" && !isGroupResource(k)).map(([k, u]) => [k, u.total])))) +
        card("Object store", `${bytes(o.object_store.used_bytes)} / ${bytes(o.object_store.capacity_bytes)}`, `${o.object_store.objects} objects; ${bytes(o.object_store.spilled_bytes)} spilled`) +
        card("Jobs", `${o.jobs.RUNNING || 0} running`, `${o.jobs.FINISHED || 0} finished`) +
        card("Actors", `${o.actors.ALIVE || 0} alive`, Object.entries(o.actors).filter(([k]) => k !== "ALIVE").map(([k, n]) => `${n} ${k.toLowerCase()}`).join(", "));
      const d = (list) => table(["node", "shape", "count", "labels"], list.map(x => [short(x.node_id), esc(resources(x.shape)), x.count, esc(x.labels)]), "None.");
      $("#demands").innerHTML = `<h2>Pending demands</h2>${d(o.pending)}<h2>Infeasible demands</h2>${d(o.infeasible)}`;
      $("#failures").innerHTML = `<h2>Recent failures</h2>` + table(["when", "what", "name", "error"], o.failures.map(f => [
        esc(when(f.time)), f.kind === "task" ? `<a href="#/tasks/${esc(f.id)}">task ${short(f.id)}</a>` : f.kind === "actor" ? `<a href="#/actors/${esc(f.id)}">actor ${short(f.id)}</a>` : `<a href="#/jobs/${esc(f.id)}">job ${esc(f.id)}</a>`,
        esc(f.name), `<span class="msg" title="${esc(f.message)}">${esc(f.message.split("\n")[0])}</span>`]), "No failures.");
    },
    history: s => { if (s.time && !s.time.startsWith("0001") && (!history.length || history[history.length - 1].time !== s.time)) { history.push(s); if (history.length > 720) history.shift(); draw(); } },
  });
};

views.nodes = main => {
  main.innerHTML = `<h1>Cluster</h1><div id="nodes"></div><h2>Workers</h2><div id="workers"></div>`;
  follow(["nodes", "workers"], {
    nodes: ns => {
      if (ns.error) { $("#nodes").innerHTML = `<p class="error">${esc(ns.error)}</p>`; return; }
      $("#nodes").innerHTML = table(["node", "state", "host", "head", "labels", "resources (available / total)", "CPU busy", "memory", "workers", "object store"], ns.map(n => [
        `<code class="node-id">${short(n.node_id)}</code>`, badge(n.state), esc(n.hostname), n.is_head ? "head" : "",
        esc(Object.entries(n.labels || {}).map(([k, v]) => `${k}=${v}`).join(" ")),
        esc(Object.keys(n.resources_total || {}).sort().map(k => `${k} ${+(n.resources_available[k] || 0).toFixed(2)}/${+n.resources_total[k].toFixed(2)}`).join(", ")),
        n.state === "ALIVE" ? `${(100 * (n.cpu_busy || 0)).toFixed(0)}%` : "", n.memory_total_bytes ? `${bytes(n.memory_used_bytes)} / ${bytes(n.memory_total_bytes)}` : "",
        n.num_workers, `${bytes(n.object_store_used_bytes)} / ${bytes(n.object_store_total_bytes)}`]), "No nodes.");
    },
    workers: ws => {
      if (ws.error) { $("#workers").innerHTML = `<p class="error">${esc(ws.error)}</p>`; return; }
      $("#workers").innerHTML = table(["worker", "node", "pid", "state", "job", "actor", "started"], ws.map(w => [
        short(w.worker_id), short(w.node_id), w.pid, badge(w.state || ""), short(w.job_id), w.actor_id ? `<a href="#/actors/${esc(w.actor_id)}">${short(w.actor_id)}</a>` : "", esc(when(w.start_time))]), "No workers.");
    },
  });
};

views.jobs = main => {
  main.innerHTML = `<h1>Jobs</h1><h2>Submitted jobs</h2><div id="subs"></div><h2>Drivers</h2><div id="drivers"></div>`;
  main.addEventListener("click", async ev => {
    const b = ev.target.closest("button[data-stop]");
    if (!b) return;
    b.disabled = true;
    try { await post(`/api/jobs/${encodeURIComponent(b.dataset.stop)}/stop`); } catch (e) { alert(e.message); }
  });
  follow(["jobs"], {
    jobs: v => {
      if (v.error) { $("#subs").innerHTML = `<p class="error">${esc(v.error)}</p>`; return; }
      $("#subs").innerHTML = table(["submission", "status", "entrypoint", "submitted", "duration", "exit code", ""], v.submissions.map(j => [
        `<a href="#/jobs/${esc(j.submission_id)}">${esc(j.submission_id)}</a>`, `<span class="job-status" data-id="${esc(j.submission_id)}">${badge(j.status)}</span>`,
        `<code>${esc((j.entrypoint || []).join(" "))}</code>`, esc(when(j.submit_time)), esc(duration(j.start_time, j.end_time)),
        j.exit_code ?? "", ["PENDING", "RUNNING"].includes(j.status) ? `<button data-stop="${esc(j.submission_id)}">Stop</button>` : ""]), "No job was submitted (goray job submit).");
      $("#drivers").innerHTML = table(["job", "status", "entrypoint", "host", "pid", "started", "duration"], v.drivers.slice().reverse().map(j => [
        `<a href="#/jobs/${esc(j.job_id)}">${short(j.job_id)}</a>`, badge(j.status), `<code>${esc(j.entrypoint)}</code>`, esc(j.driver_host), j.driver_pid, esc(when(j.start_time)), esc(duration(j.start_time, j.end_time))]), "No drivers.");
    },
  });
};

views.job = (main, id) => {
  main.innerHTML = `<p><a href="#/jobs">Jobs</a> / <code>${esc(id)}</code></p><div id="job"></div><h2>Output</h2><pre id="log" class="log"></pre>`;
  let isSubmission = false;
  const render = async () => {
    let v;
    try { v = await api(`/api/jobs/${encodeURIComponent(id)}`); } catch (e) { $("#job").innerHTML = `<p class="error">${esc(e.message)}</p>`; return; }
    if (v.submission) {
      const j = v.submission;
      isSubmission = true;
      $("#job").innerHTML = `<h1>Job ${esc(j.submission_id)} <span id="job-status">${badge(j.status)}</span></h1>` +
        `<dl class="facts"><dt>Entrypoint</dt><dd><code>${esc((j.entrypoint || []).join(" "))}</code></dd><dt>Submitted</dt><dd>${esc(when(j.submit_time))}</dd>` +
        `<dt>Duration</dt><dd>${esc(duration(j.start_time, j.end_time))}</dd><dt>Exit code</dt><dd id="exit-code">${j.exit_code ?? ""}</dd>` +
        `<dt>Driver</dt><dd>${esc(j.host)} pid ${j.driver_pid || ""}</dd><dt>Message</dt><dd>${esc(j.message)}</dd></dl>` +
        (["PENDING", "RUNNING"].includes(j.status) ? `<button id="stop">Stop</button>` : "");
      const b = $("#stop");
      if (b) b.onclick = async () => { b.disabled = true; try { await post(`/api/jobs/${encodeURIComponent(id)}/stop`); } catch (e) { alert(e.message); } };
    } else {
      const j = v.driver;
      $("#job").innerHTML = `<h1>Job ${short(j.job_id)} ${badge(j.status)}</h1><dl class="facts"><dt>Entrypoint</dt><dd><code>${esc(j.entrypoint)}</code></dd>` +
        `<dt>Driver</dt><dd>${esc(j.driver_host)} pid ${j.driver_pid}</dd><dt>Started</dt><dd>${esc(when(j.start_time))}</dd><dt>Duration</dt><dd>${esc(duration(j.start_time, j.end_time))}</dd></dl>` +
        `<h2>Tasks</h2>` + summaryTable(v.tasks || []);
      $("#log").textContent = "(a driver's own output is where it runs: goray logs --job " + j.job_id.slice(0, 8) + ")";
    }
  };
  render().then(() => {
    if (!isSubmission) return;
    logSource = new EventSource(`/api/jobs/${encodeURIComponent(id)}/logs?follow=1`);
    logSource.addEventListener("log", ev => { $("#log").textContent += JSON.parse(ev.data); });
    logSource.addEventListener("end", () => { logSource.close(); logSource = null; render(); });
  });
  every(2000, render);
};

function summaryTable(sums) {
  const states = ["PENDING_ARGS", "SUBMITTED", "RUNNING", "FINISHED", "FAILED"];
  return table(["function", "type", "total", ...states.map(s => s.toLowerCase().replace("_", " "))], sums.map(s => [
    s.function ? `<a href="#/tasks?function=${encodeURIComponent(s.function)}">${esc(s.function)}</a>` : `<span class="hint" title="a worker reported the attempt running before its owner reported what it is">(not known yet)</span>`, esc(s.type === "ACTOR_TASK" ? "actor call" : "task"), s.total,
    ...states.map(st => s.states[st] ? (st === "FAILED" ? `<span class="bad">${s.states[st]}</span>` : s.states[st]) : "")]), "No tasks (task events may be off: GORAY_TASK_EVENTS=0).");
}

views.actors = main => {
  main.innerHTML = `<h1>Actors</h1><div class="filters"><input id="q" type="search" placeholder="filter: class, name, state, node, id"></div><div id="summary"></div><div id="actors"></div>`;
  let last = [];
  const draw = () => {
    const q = $("#q").value.trim().toLowerCase();
    const rows = last.filter(a => !q || [a.actor_id, a.class_name, a.name, a.state, a.namespace, a.node_id, a.death_cause].some(v => String(v || "").toLowerCase().includes(q)));
    $("#actors").innerHTML = table(["actor", "class", "name", "state", "node", "pid", "restarts", "last death cause", ""], rows.map(a => [
      `<a href="#/actors/${esc(a.actor_id)}">${short(a.actor_id)}</a>`, esc(a.class_name), esc(a.name ? a.namespace + "/" + a.name : ""), `<span class="actor-state" data-name="${esc(a.name)}">${badge(a.state)}</span>`,
      short(a.node_id), a.pid || "", `<span class="restarts" data-name="${esc(a.name)}">${a.num_restarts}</span>`, `<span class="msg">${esc(a.death_cause)}</span>`,
      a.state !== "DEAD" ? `<button data-kill="${esc(a.actor_id)}">Kill</button>` : ""]), q ? "No actor matches." : "No actors.");
    const by = {};
    for (const a of last) by[a.state] = (by[a.state] || 0) + 1;
    $("#summary").innerHTML = Object.entries(by).map(([k, n]) => `${badge(k)} ${n}`).join(" ");
  };
  $("#q").addEventListener("input", draw);
  main.addEventListener("click", async ev => {
    const b = ev.target.closest("button[data-kill]");
    if (!b || !confirm("Kill this actor for good?")) return;
    b.disabled = true;
    try { await post(`/api/actors/${encodeURIComponent(b.dataset.kill)}/kill`); } catch (e) { alert(e.message); }
  });
  follow(["actors"], { actors: as => { if (as.error) { $("#actors").innerHTML = `<p class="error">${esc(as.error)}</p>`; return; } last = as.slice().reverse(); draw(); } });
};

views.actor = (main, id) => {
  main.innerHTML = `<p><a href="#/actors">Actors</a> / <code>${esc(id)}</code></p><div id="actor"></div><h2>Latest calls</h2><div id="calls"></div>` +
    `<h2>Log <span class="hint">(its worker's last 200 lines of stdout, then stderr)</span></h2><pre id="actor-log" class="log"></pre>`;
  every(2000, async () => {
    let v;
    try { v = await api(`/api/actors/${encodeURIComponent(id)}`); } catch (e) { $("#actor").innerHTML = `<p class="error">${esc(e.message)}</p>`; return; }
    const a = v.actor;
    $("#actor").innerHTML = `<h1>${esc(a.class_name)} ${badge(a.state)}</h1><dl class="facts"><dt>Actor</dt><dd><code>${esc(a.actor_id)}</code></dd>` +
      `<dt>Name</dt><dd>${esc(a.name ? a.namespace + "/" + a.name : "(unnamed)")}</dd><dt>Job</dt><dd><a href="#/jobs/${esc(a.job_id)}">${short(a.job_id)}</a></dd>` +
      `<dt>Node</dt><dd>${short(a.node_id)}</dd><dt>Pid</dt><dd>${a.pid || ""}</dd><dt>Restarts</dt><dd>${a.num_restarts}</dd>` +
      `<dt>Started</dt><dd>${esc(when(a.start_time))}</dd><dt>${a.state === "DEAD" ? "Death cause" : "Last death"}</dt><dd>${esc(a.death_cause)}</dd></dl>` +
      `<p class="hint">To follow its log: <code>goray logs --actor ${esc(a.actor_id.slice(0, 8))} -f</code></p>`;
    $("#calls").innerHTML = taskTable(v.calls);
    try {
      const l = await api(`/api/actors/${encodeURIComponent(id)}/logs`);
      $("#actor-log").textContent = (l.stdout || "") + (l.stderr ? "--- stderr ---\n" + l.stderr : "");
    } catch (e) { $("#actor-log").textContent = "(" + e.message + ")"; }
  });
};

function taskTable(ts) {
  return table(["task", "attempt", "function", "state", "node", "worker pid", "ran", "error"], ts.map(t => [
    `<a href="#/tasks/${esc(t.task_id)}">${short(t.task_id)}</a>`, t.attempt, esc(t.function), badge(t.state), short(t.node_id), t.worker_pid || "",
    esc(duration(t.start_time, t.end_time)), `<span class="msg">${esc(t.error_type ? t.error_type + ": " + t.error_message.split("\n")[0] : "")}</span>`]), "No tasks.");
}

// drawStream draws the task stream (Dask's): a lane per worker, a span per
// task attempt over the last windowMs, coloured by function (failed ones
// red), running ones up to now.
function drawStream(canvas, v, windowMs) {
  const lanes = v.workers.length, laneH = 14, top = 4, axis = 16, left = 120;
  const width = canvas.clientWidth || 1000, height = top + Math.max(lanes, 1) * laneH + axis;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = width * dpr; canvas.height = height * dpr; canvas.style.height = height + "px";
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, width, height);
  const t1 = v.now, t0 = t1 - windowMs, x = t => left + (t - t0) / windowMs * (width - left - 4);
  g.font = "10px ui-monospace, monospace";
  g.fillStyle = "#6b7384";
  v.workers.forEach((w, i) => g.fillText(w, 2, top + i * laneH + 10));
  let drawn = 0;
  for (const [w, f, start, end, failed] of v.spans) {
    const e = end || t1;
    if (e < t0) continue;
    const x0 = x(Math.max(start, t0)), x1 = Math.max(x(e), x0 + 1);
    g.fillStyle = failed ? "#d64545" : palette[f % palette.length];
    g.fillRect(x0, top + w * laneH + 1, x1 - x0, laneH - 3);
    drawn++;
  }
  g.fillStyle = "#6b7384";
  g.fillText(`-${windowMs / 1000} s`, left, height - 3);
  g.fillText("now", width - 26, height - 3);
  canvas.dataset.spans = drawn;
  canvas.dataset.lanes = lanes;
  const legend = v.functions.map((f, i) => `<span><i class="sw c${i % palette.length}"></i>${esc(f)}</span>`).join("");
  return legend;
}

views.tasks = (main, _, params) => {
  const fn = params.get("function") || "";
  main.innerHTML = `<h1>Tasks</h1><p id="job-line"></p><div id="tsum"></div>` +
    `<h2>Task stream <span class="hint">(the last 10 s, a lane per worker)</span></h2><canvas id="stream" class="stream" data-spans="0" data-lanes="0"></canvas><div id="stream-legend" class="legend"></div>` +
    `<h2>Latest failures</h2><div id="failed"></div>` + (fn ? `<h2>Latest of ${esc(fn)}</h2><div id="byfn"></div>` : "");
  const streamTimer = setInterval(async () => {
    try {
      const v = await api("/api/tasks/stream");
      const c = $("#stream");
      if (c) $("#stream-legend").innerHTML = drawStream(c, v, 10000);
    } catch { /* the next tick tries again */ }
  }, 1000);
  const stop = stopLive;
  stopLive = () => { clearInterval(streamTimer); stopLive = stop; stop(); };
  follow(["tasks:"], {
    "tasks:": v => {
      if (v.error) { $("#tsum").innerHTML = `<p class="error">${esc(v.error)}</p>`; return; }
      $("#job-line").innerHTML = `Job <a href="#/jobs/${esc(v.job.job_id)}">${short(v.job.job_id)}</a> ${badge(v.job.status)} <code>${esc(v.job.entrypoint)}</code>`;
      $("#tsum").innerHTML = summaryTable(v.summaries);
    },
  });
  every(2000, async () => {
    try {
      const f = await api(`/api/tasks?state=FAILED&limit=20`);
      $("#failed").innerHTML = taskTable(f.tasks);
      if (fn) $("#byfn").innerHTML = taskTable((await api(`/api/tasks?function=${encodeURIComponent(fn)}&limit=50`)).tasks);
    } catch (e) { $("#failed").innerHTML = `<p class="error">${esc(e.message)}</p>`; }
  });
};

views.task = (main, id) => {
  main.innerHTML = `<p><a href="#/tasks">Tasks</a> / <code>${esc(id)}</code></p><div id="task"></div>`;
  every(3000, async () => {
    let v;
    try { v = await api(`/api/tasks/${encodeURIComponent(id)}`); } catch (e) { $("#task").innerHTML = `<p class="error">${esc(e.message)}</p>`; return; }
    const a = v.attempts, last = a[a.length - 1];
    const t0 = Math.min(...a.map(t => new Date(t.creation_time || t.start_time).getTime()));
    const t1 = Math.max(...a.map(t => t.end_time && !t.end_time.startsWith("0001") ? new Date(t.end_time).getTime() : Date.now()), t0 + 1);
    // An attempt: waiting (submitted to started) in grey, running in its
    // state's colour.
    const ms = v => v && !v.startsWith("0001") ? new Date(v).getTime() : 0;
    const bar = t => {
      const c = ms(t.creation_time) || ms(t.start_time), s = ms(t.start_time) || c, e = ms(t.end_time) || Date.now();
      const X = v => 40 + (v - t0) / (t1 - t0) * 552, y = 6 + 26 * t.attempt;
      const wait = s > c ? `<rect x="${X(c).toFixed(1)}" width="${Math.max(1, X(s) - X(c)).toFixed(1)}" y="${y + 6}" height="6" class="wait"><title>waited ${esc(duration(t.creation_time, t.start_time))}</title></rect>` : "";
      return wait + `<rect x="${X(s).toFixed(1)}" width="${Math.max(2, X(e) - X(s)).toFixed(1)}" y="${y}" height="18" class="span st-${esc(t.state.toLowerCase())}"><title>attempt ${t.attempt}: ${esc(t.state)}, ran ${esc(duration(t.start_time, t.end_time))}</title></rect>` +
        `<text x="4" y="${y + 14}">#${t.attempt}</text>`;
    };
    $("#task").innerHTML = `<h1>${esc(last.function)} ${badge(last.state)}</h1><dl class="facts"><dt>Task</dt><dd><code>${esc(last.task_id)}</code></dd>` +
      `<dt>Job</dt><dd><a href="#/jobs/${esc(last.job_id)}">${short(last.job_id)}</a></dd><dt>Type</dt><dd>${esc(last.type)}</dd>` +
      (last.actor_id ? `<dt>Actor</dt><dd><a href="#/actors/${esc(last.actor_id)}">${short(last.actor_id)}</a></dd>` : "") +
      (last.parent_task_id ? `<dt>Parent</dt><dd><a href="#/tasks/${esc(last.parent_task_id)}">${short(last.parent_task_id)}</a></dd>` : "") + `</dl>` +
      (last.error_type ? `<h2>Error</h2><pre class="error-text" id="task-error">${esc(last.error_type)}: ${esc(last.error_message)}</pre>` : "") +
      `<h2>Attempts</h2><svg class="timeline" viewBox="0 0 600 ${12 + 26 * a.length}">${a.map(bar).join("")}</svg>` + taskTable(a.slice().reverse()) +
      `<p class="hint">Its worker's log: <code>goray logs --task ${esc(last.task_id.slice(0, 8))}</code></p>`;
  });
};

views["placement-groups"] = main => {
  main.innerHTML = `<h1>Placement groups</h1><div id="pgs"></div>`;
  follow(["placement-groups"], {
    "placement-groups": gs => {
      if (gs.error) { $("#pgs").innerHTML = `<p class="error">${esc(gs.error)}</p>`; return; }
      $("#pgs").innerHTML = table(["group", "name", "state", "strategy", "bundles (resources on node)", "job"], gs.map(g => [
        short(g.placement_group_id), `<span class="pg-name">${esc(g.name)}</span>`, `<span class="pg-state" data-name="${esc(g.name)}">${badge(g.state)}</span>`, esc(g.strategy),
        (g.bundles || []).map((b, i) => `${i}: ${esc(resources(b.resources || b))}${b.node_id ? " on " + short(b.node_id) : ""}`).join("<br>"), short(g.job_id)]), "No placement groups.");
    },
  });
};

views.memory = main => {
  main.innerHTML = `<h1>Memory</h1><p class="hint">Objects by node and owner, as <code>goray memory</code>.</p><div id="objs"></div>`;
  follow(["objects"], {
    objects: os => {
      if (os.error) { $("#objs").innerHTML = `<p class="error">${esc(os.error)}</p>`; return; }
      const groups = {};
      for (const o of os) {
        const node = (o.locations && o.locations.length) ? o.locations.map(l => (l.node_id || "").slice(0, 8)).join(",") : "(inline)";
        const owner = o.owner && o.owner.pid ? `pid ${o.owner.pid} on ${(o.owner.node_id || "").slice(0, 8)}` : "(unknown)";
        const k = node + " | " + owner;
        (groups[k] = groups[k] || { node, owner, n: 0, size: 0, pins: 0, spilled: 0 });
        groups[k].n++; groups[k].size += o.size || 0; groups[k].pins += o.pins || 0; if (o.spilled) groups[k].spilled++;
      }
      $("#objs").innerHTML = table(["node (copies)", "owner", "objects", "bytes", "pins", "spilled"], Object.values(groups).map(g => [esc(g.node), `<span class="owner">${esc(g.owner)}</span>`, g.n, bytes(g.size), g.pins, g.spilled]), "No objects.") +
        `<h2>Largest objects</h2>` + table(["object", "size", "where", "state", "pins"], os.slice().sort((a, b) => (b.size || 0) - (a.size || 0)).slice(0, 50).map(o => [short(o.object_id), bytes(o.size), esc(o.where), esc(o.state), o.pins]), "No objects.");
    },
  });
};

// --- routing ---

function route() {
  stopLive();
  const [path, query] = (location.hash.slice(1) || "/overview").split("?");
  const parts = path.split("/").filter(Boolean);
  const params = new URLSearchParams(query || "");
  const main = $("#main");
  const fresh = main.cloneNode(false); // drops the old view's listeners
  main.replaceWith(fresh);
  let name = parts[0] || "overview", arg = parts[1];
  const detail = { jobs: "job", actors: "actor", tasks: "task" };
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === name);
  if (arg && detail[name]) name = detail[name];
  (views[name] || views.overview)(fresh, arg && decodeURIComponent(arg), params);
}
window.addEventListener("hashchange", route);
route();
