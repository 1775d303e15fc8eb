// The Rill console: polls /ui/api/overview, renders the tables, and charts rates computed from successive
// counter readings (one point per poll, the last HISTORY points kept).
"use strict";

const POLL_MS = 2000;
const HISTORY = 60;
const COLORS = ["#2f6fde", "#d9480f", "#2b8a3e", "#9c36b5", "#e67700", "#0c8599", "#c2255c", "#5c940d"];

let previous = null;
const series = { produce: {}, fetch: {}, latency: {} };

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  return td;
}

function badge(text, kind) {
  const td = document.createElement("td");
  const span = document.createElement("span");
  span.className = "badge " + kind;
  span.textContent = text;
  td.appendChild(span);
  return td;
}

function fill(tableId, rows) {
  const body = document.querySelector("#" + tableId + " tbody");
  body.replaceChildren(...rows);
}

function renderBrokers(overview) {
  fill("brokers", overview.brokers.map((b) => {
    const tr = document.createElement("tr");
    const state = b.fenced ? "fenced" : b.shutting_down ? "stopping" : b.draining ? "draining" : "alive";
    tr.className = b.fenced ? "fenced" : "alive";
    tr.dataset.broker = b.id;
    tr.append(cell(b.id), badge(state, b.fenced ? "fenced" : state === "alive" ? "alive" : "draining"), cell(b.epoch),
      cell(b.address), cell(b.kafka_address), cell(b.leaderships));
    return tr;
  }));
}

function renderPartitions(overview) {
  const rows = [];
  for (const topic of overview.topics) {
    for (const p of topic.partitions) {
      const tr = document.createElement("tr");
      const state = p.leader === null ? "offline" : p.under_replicated ? "under-replicated" : "ok";
      tr.className = state;
      tr.dataset.topic = topic.name;
      tr.dataset.partition = p.partition;
      tr.append(cell(topic.name), cell(p.partition), cell(p.leader), cell(p.leader_epoch), cell(p.replicas.join(",")),
        cell(p.isr.join(",")), cell(p.high_watermark), cell(p.log_end_offset), badge(state, state));
      rows.push(tr);
    }
  }
  fill("partitions", rows);
}

function renderGroups(overview) {
  fill("groups", overview.groups.map((g) => {
    const tr = document.createElement("tr");
    tr.dataset.group = g.group_id;
    tr.append(cell(g.group_id), cell(g.state), cell(g.generation), cell(g.members), cell(g.lag));
    return tr;
  }));
}

function push(target, name, value) {
  const points = target[name] || (target[name] = []);
  points.push(value);
  if (points.length > HISTORY) points.shift();
}

// Per-topic rates (MB/s) and mean latencies (ms) since the previous poll.
function recordRates(overview) {
  if (previous) {
    const seconds = Math.max((overview.now_ms - previous.now_ms) / 1000, 0.001);
    const rate = (now, before, topic) => Math.max(((now[topic] || 0) - (before[topic] || 0)) / seconds / 1e6, 0);
    const topics = new Set([...Object.keys(overview.traffic.produced_bytes), ...Object.keys(overview.traffic.fetched_bytes)]);
    for (const topic of topics) {
      push(series.produce, topic, rate(overview.traffic.produced_bytes, previous.traffic.produced_bytes, topic));
      push(series.fetch, topic, rate(overview.traffic.fetched_bytes, previous.traffic.fetched_bytes, topic));
    }
    for (const api of ["produce", "fetch"]) {
      const now = overview.traffic[api + "_latency"];
      const before = previous.traffic[api + "_latency"];
      const count = now.count - before.count;
      push(series.latency, api, count > 0 ? ((now.sum_seconds - before.sum_seconds) / count) * 1000 : 0);
    }
  }
  previous = overview;
}

function drawChart(svgId, legendId, data) {
  const svg = document.getElementById(svgId);
  const names = Object.keys(data);
  const max = Math.max(0.001, ...names.flatMap((n) => data[n]));
  const lines = names.map((name, i) => {
    const points = data[name];
    const step = 300 / Math.max(HISTORY - 1, 1);
    const offset = (HISTORY - points.length) * step;
    const coords = points.map((v, j) => `${(offset + j * step).toFixed(1)},${(98 - (v / max) * 94).toFixed(1)}`);
    return `<polyline fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="1.5" points="${coords.join(" ")}"/>`;
  });
  svg.innerHTML = `<text x="2" y="10" font-size="9" fill="#9aa3b2">max ${max.toFixed(2)}</text>` + lines.join("");
  const legend = document.getElementById(legendId);
  legend.replaceChildren(...names.map((name, i) => {
    const span = document.createElement("span");
    span.style.color = COLORS[i % COLORS.length];
    const last = data[name][data[name].length - 1];
    span.textContent = `${name} ${last === undefined ? "–" : last.toFixed(2)}`;
    return span;
  }));
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const response = await fetch("/ui/api/overview", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const overview = await response.json();
    document.getElementById("served-by").textContent = `served by broker ${overview.node_id}`;
    const c = overview.controller;
    document.getElementById("controller").textContent =
      `active controller ${c.active === null ? "none" : c.active} (term ${c.term})`;
    renderBrokers(overview);
    renderPartitions(overview);
    renderGroups(overview);
    recordRates(overview);
    drawChart("chart-produce", "legend-produce", series.produce);
    drawChart("chart-fetch", "legend-fetch", series.fetch);
    drawChart("chart-latency", "legend-latency", series.latency);
    status.textContent = `updated ${new Date(overview.now_ms).toLocaleTimeString()}`;
    status.className = "muted";
    document.body.dataset.loaded = "true";
  } catch (e) {
    status.textContent = `cannot reach the broker: ${e.message}`;
    status.className = "badge fenced";
  }
}

poll();
setInterval(poll, POLL_MS);
