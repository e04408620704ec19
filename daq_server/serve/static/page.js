// The std-daq page: polls the JSON endpoints every second and draws what they say.
// A server that requires a token answers 401/403: the page then asks for the token once and keeps it
// in sessionStorage (this tab only), sending it as "Authorization: Bearer <token>".
"use strict";

const PERIOD_MS = 1000;
const HISTORY_S = 300;
const TOKEN_KEY = "std_daq_token";
const rateHistory = []; // {t, detector, writer}, kept here: the server keeps no history
let scale = "linear";
let imageUrl = null;

const $ = (id) => document.getElementById(id);

class TokenNeeded extends Error {}

async function get(path) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  const response = await fetch(path, { headers, cache: "no-store" });
  if (response.status === 401 || response.status === 403) throw new TokenNeeded(path);
  if (!response.ok) throw new Error(path + " answered HTTP " + response.status);
  return response;
}

async function payload(path, key) {
  const body = await (await get(path)).json();
  if (body.status !== "ok") throw new Error(body.message || path + " failed");
  return body[key];
}

function setState(id, word) {
  const cell = $(id);
  cell.textContent = word;
  cell.className = "state-" + word;
}

function row(cells, header) {
  const tr = document.createElement("tr");
  for (const value of cells) {
    const td = document.createElement(header ? "th" : "td");
    td.textContent = value;
    tr.appendChild(td);
  }
  return tr;
}

async function showStatus() {
  const status = await payload("/writer/status", "writer");
  const acq = status.acquisition;
  setState("writer-state", status.state);
  $("writer-reason").textContent = status.reason || "";
  setState("acq-state", acq.state);
  $("acq-message").textContent = acq.message;
  $("acq-file").textContent = acq.info.output_file || "-";
  const wanted = acq.info.n_images || 0;
  const done = acq.stats.n_write_completed || 0;
  $("acq-progress").max = Math.max(wanted, 1);
  $("acq-progress").value = done;
  $("acq-count").textContent = wanted ? done + " / " + wanted + " images" : "";
}

async function showStats() {
  const stats = await payload("/daq/stats", "stats");
  const now = Date.now() / 1000;
  rateHistory.push({ t: now, detector: stats.detector.images_per_second, writer: stats.writer.images_per_second });
  while (rateHistory.length && rateHistory[0].t < now - HISTORY_S) rateHistory.shift();
  $("det-rate").textContent = stats.detector.images_per_second.toFixed(1);
  $("wr-rate").textContent = stats.writer.images_per_second.toFixed(1);
  drawRates(now);
  const table = $("counters");
  table.replaceChildren();
  for (const [name, value] of Object.entries(stats.detector)) {
    if (Number.isInteger(value)) table.appendChild(row([name, value.toLocaleString("en")]));
  }
  if (!table.children.length) table.appendChild(row(["none reported"]));
}

function drawRates(now) {
  const canvas = $("rates");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 50, bottom = 20;
  ctx.clearRect(0, 0, w, h);
  let top = 1;
  for (const p of rateHistory) top = Math.max(top, p.detector, p.writer);
  top *= 1.1;
  ctx.strokeStyle = "#ccc";
  ctx.fillStyle = "#555";
  ctx.font = "11px sans-serif";
  ctx.strokeRect(left, 0, w - left - 1, h - bottom);
  ctx.fillText(top.toFixed(top < 10 ? 1 : 0), 2, 12);
  ctx.fillText("0", 2, h - bottom);
  ctx.fillText("-" + HISTORY_S / 60 + " min", left, h - 5);
  ctx.fillText("now", w - 25, h - 5);
  const x = (t) => left + ((t - (now - HISTORY_S)) / HISTORY_S) * (w - left);
  const y = (v) => (h - bottom) * (1 - v / top);
  for (const [key, colour] of [["detector", "#1f77b4"], ["writer", "#d62728"]]) {
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    rateHistory.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p[key])) : ctx.moveTo(x(p.t), y(p[key]))));
    ctx.stroke();
  }
}

async function showLog() {
  const logs = await payload("/daq/logs/5", "logs");
  const table = $("log");
  table.replaceChildren(row(["started", "file", "images", "state", "message"], true));
  for (const r of logs) {
    const started = r.stats.start_time ? new Date(r.stats.start_time * 1000).toLocaleString() : "-";
    const images = r.stats.n_write_completed + " / " + r.info.n_images;
    table.appendChild(row([started, r.info.output_file, images, r.state, r.message]));
  }
  if (!logs.length) table.appendChild(row(["none yet"]));
}

async function showConfig() {
  const c = await payload("/daq/config", "config");
  $("detector").textContent =
    c.detector_name + " (" + c.detector_type + ", " + c.image_pixel_width + " x " + c.image_pixel_height +
    ", " + c.bit_depth + " bit)";
}

async function showImage() {
  const response = await get("/daq/live/latest.png?scale=" + scale);
  const frame = response.headers.get("X-Frame-Number");
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  $("latest").src = url;
  if (imageUrl) URL.revokeObjectURL(imageUrl);
  imageUrl = url;
  $("frame").textContent = frame ? "frame " + frame : "(no image yet)";
  $("scale-min").textContent = response.headers.get("X-Scale-Min");
  $("scale-max").textContent = response.headers.get("X-Scale-Max");
}

async function tick() {
  const results = await Promise.allSettled([showStatus(), showStats(), showLog(), showImage(), showConfig()]);
  const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason);
  if (failed.some((e) => e instanceof TokenNeeded)) {
    $("token-form").hidden = false;
    $("connection").textContent = "token required";
  } else if (failed.length) {
    $("connection").textContent = "cannot update: " + failed[0].message;
  } else {
    $("connection").textContent = "updated " + new Date().toLocaleTimeString();
  }
  setTimeout(tick, PERIOD_MS);
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token-form").hidden = true;
});
for (const input of document.querySelectorAll("input[name=scale]")) {
  input.addEventListener("change", () => {
    scale = input.value;
  });
}
tick();
