// MAMER's page: record (MediaRecorder -> POST /predict), upload or type; live mode streams 16 kHz float32 PCM
// over WS /live and draws the answers. Plain JavaScript, no libraries, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const DIMENSIONS = ["arousal", "valence", "dominance"];
const LIVE_SECONDS = 30; // the chart shows this much of the past
const LIVE_RATE = 16000;
// Rough speed of a timeline on 2 CPU cores (x real time; docs/recordings.md), for the wait's estimate only.
const TIMELINE_SPEED = { transcribed: 10, untranscribed: 60 };

const state = { info: null, card: null, colours: null, audio: null, audioUrl: null, stopAt: null,
                recorder: null, live: null };

// The server's palette (GET /colours.json, the same as `mamer predict --plot`'s): named colours, then the spares
// in turn for the model's other labels.
function colourOf(name) {
  const palette = state.colours || { named: {}, spare: ["#8a939e"] };
  if (palette.named[name]) return palette.named[name];
  const others = (state.card ? state.card.labels : []).filter((n) => !palette.named[n]);
  return palette.spare[Math.max(0, others.indexOf(name)) % palette.spare.length];
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "style") Object.assign(node.style, value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function setStatus(message) { $("status").textContent = message || ""; }

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
  if (message) setStatus("");
}

const percent = (p) => `${(100 * p).toFixed(1)}%`;
const seconds = (s) => `${Math.floor(s / 60)}:${(s % 60).toFixed(1).padStart(4, "0")}`;

// ------------------------------------------------------------------ the model card

async function loadCard() {
  try {
    const [card, info, colours] = await Promise.all([fetchJson("/card"), fetchJson("/info"),
                                                     fetchJson("/colours.json")]);
    state.card = card;
    state.info = info;
    state.colours = colours;
  } catch (err) {
    showError(`Could not read the model's description from the server: ${err.message}`);
    return;
  }
  const card = state.card;
  $("model-name").textContent = card.name;
  document.title = `MAMER: ${card.name}`;
  $("card-summary").textContent = card.summary || "";
  $("asr-row").hidden = !card.transcription;
  $("live").disabled = !card.views.includes("audio");
  const facts = [
    ["Name", card.name],
    ["Predicts", [card.labels.join(", "), card.dimensions.length ? `${card.dimensions.join(", ")}` : ""]
      .filter(Boolean).join("; ")],
    ["Reads", card.views.join(", ")],
    ["Encoders", Object.entries(card.encoders).map(([k, v]) => `${k}: ${v}`).join(", ")],
    ["Size", `${card.params.toLocaleString("en")} parameters (shared model)`],
    ["Trained on", card.training_data.join(", ") || "not recorded"],
    ["Longest audio read at once", `${card.max_seconds} s (longer files get a timeline)`],
    ["Licence", card.licence || "not stated"],
  ];
  $("card-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  const rows = card.scores.map((s) => el("tr", {},
    el("td", { text: s.data ?? "" }), el("td", { text: s.split ?? "" }), el("td", { text: s.metric ?? "" }),
    el("td", { text: typeof s.value === "number" ? s.value.toFixed(3) : String(s.value) })));
  $("card-scores").querySelector("tbody").replaceChildren(...rows);
  $("card-scores").hidden = rows.length === 0;
}

async function fetchJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  return response.json();
}

// ------------------------------------------------------------------ inputs

function useAudio(file, name) {
  if (state.audioUrl) URL.revokeObjectURL(state.audioUrl);
  state.audio = file;
  state.audioUrl = file ? URL.createObjectURL(file) : null;
  const player = $("player");
  player.hidden = !file;
  if (file) player.src = state.audioUrl;
  else player.removeAttribute("src");
  $("audio-name").textContent = file ? `Audio: ${name || file.name} (${(file.size / 1e6).toFixed(2)} MB)` : "";
}

function onFileChosen() {
  showError("");
  const file = $("file").files[0];
  if (!file) return;
  const limit = state.info ? state.info.max_upload_mb : Infinity;
  if (file.size > limit * 1024 * 1024) {
    showError(`${file.name} is too large: this service takes files of at most ${limit} MB.`);
    $("file").value = "";
    return;
  }
  useAudio(file);
}

function clearAll() {
  $("form").reset();
  useAudio(null);
  showError("");
  setStatus("");
  for (const id of ["result", "timeline", "live-panel"]) $(id).hidden = true;
}

// ------------------------------------------------------------------ prediction

async function predict(event) {
  if (event) event.preventDefault();
  showError("");
  const text = $("text").value.trim();
  if (!state.audio && !text) {
    showError("Nothing to predict from yet: record, choose a file, or type some text.");
    return;
  }
  const form = new FormData();
  if (state.audio) form.append("audio", state.audio, state.audio.name || "recording.webm");
  if (text) form.append("text", text);
  form.append("transcribe", $("asr").checked && !$("asr-row").hidden ? "true" : "false");
  const button = $("predict");
  button.disabled = true;
  setStatus(state.audio ? "Listening to the audio…" : "Reading the text…");
  const progress = state.audio ? new Progress(form.get("transcribe") === "true" && !text) : null;
  let response;
  try {
    response = await post("/predict", form, progress);
  } catch (err) {
    showError(`The server did not answer (${err.message}). Is mamer serve still running?`);
    return;
  } finally {
    button.disabled = false;
    if (progress) progress.stop();
  }
  if (!response.ok) {
    showError(describeError(response.status, response.body));
    return;
  }
  setStatus("");
  if (response.body.segments) showTimeline(response.body);
  else showPrediction(response.body);
}

// POST with XMLHttpRequest rather than fetch: only it reports how much of an upload has gone.
function post(url, form, progress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", url);
    request.responseType = "json";
    if (progress) {
      request.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) progress.sent(e.loaded / e.total);
      });
      request.upload.addEventListener("load", () => progress.sent(1));
    }
    request.addEventListener("load", () => resolve({ ok: request.status >= 200 && request.status < 300,
                                                     status: request.status, body: request.response }));
    request.addEventListener("error", () => reject(new Error("network error")));
    request.send(form);
  });
}

// What a wait on an upload shows, once a second and outside the live region (a screen reader hears the status
// line once): the share sent, then the time so far against a rough estimate for a recording of this length.
class Progress {
  constructor(transcribed) {
    this.transcribed = transcribed;
    this.started = Date.now();
    this.fraction = 0;
    this.duration = Number.isFinite($("player").duration) ? $("player").duration : null;
    $("progress-row").hidden = false;
    this.timer = setInterval(() => this.show(), 1000);
    this.show();
  }

  sent(fraction) {
    this.fraction = fraction;
    if (fraction >= 1) this.started = Date.now(); // the server's part starts now
    this.show();
  }

  estimate() {
    const limit = state.card ? state.card.max_seconds : 30;
    if (!this.duration || this.duration <= limit) return null; // one clip: a few seconds, no estimate
    return this.duration / TIMELINE_SPEED[this.transcribed ? "transcribed" : "untranscribed"];
  }

  show() {
    const bar = $("progress");
    if (this.fraction < 1) {
      bar.max = 1;
      bar.value = this.fraction;
      $("progress-text").textContent = `Sending the audio: ${percent(this.fraction)}`;
      return;
    }
    const elapsed = (Date.now() - this.started) / 1000;
    const expected = this.estimate();
    const what = this.transcribed ? "transcribed and read segment by segment" : "read segment by segment";
    if (expected === null) {
      bar.removeAttribute("value"); // indeterminate
      $("progress-text").textContent = `Working: ${seconds(elapsed)} so far`;
    } else {
      bar.max = expected;
      bar.value = Math.min(elapsed, expected);
      $("progress-text").textContent = `${seconds(elapsed)} so far: ${seconds(this.duration)} of audio, ${what}, ` +
        (elapsed <= expected ? `usually about ${seconds(expected)} on 2 CPU cores`
          : "taking longer than usual (a busy machine, or speech the recogniser knows poorly)");
    }
  }

  stop() {
    clearInterval(this.timer);
    $("progress-row").hidden = true;
  }
}

function describeError(status, body) {
  let detail = body && body.detail;
  if (Array.isArray(detail)) detail = detail.map((d) => `${(d.loc || []).slice(-1)[0]}: ${d.msg}`).join("; ");
  if (status === 413) return `Too large: ${detail || "the file exceeds the service's upload limit"}.`;
  if (status === 422) return `The server could not use this input: ${detail || "it was refused"}.`;
  return `The server failed (${status}): ${detail || "no reason given"}.`;
}

function barRows(entries, scale) {
  return entries.flatMap(([name, value]) => {
    const width = Math.max(0, Math.min(1, scale(value)));
    return [
      el("span", { text: name }),
      el("span", { class: "bar", role: "presentation" },
        el("span", { style: { width: `${100 * width}%`, background: colourOf(name) } })),
      el("span", { class: "value", text: scale === identity ? percent(value) : value.toFixed(2) }),
    ];
  });
}

const identity = (x) => x;

function dimensionScale(values) {
  const inRange = values.every((v) => v >= 0.5 && v <= 5.5);
  const [low, high] = inRange ? [1, 5] : [Math.min(-1, ...values), Math.max(1, ...values)];
  return (v) => (v - low) / (high - low);
}

function showPrediction(p) {
  $("timeline").hidden = true;
  $("result").hidden = false;
  const dims = DIMENSIONS.filter((d) => typeof p[d] === "number");
  $("label").textContent = p.label || dims.map((d) => `${d} ${p[d].toFixed(2)}`).join(", ");
  $("view").textContent = `read from: ${p.view}`;
  const probabilities = Object.entries(p.probabilities || {}).sort((a, b) => b[1] - a[1]);
  $("bars").replaceChildren(...barRows(probabilities, identity));
  const values = dims.map((d) => p[d]);
  $("avd").replaceChildren(...barRows(dims.map((d) => [d, p[d]]), dimensionScale(values)));
  $("transcript").textContent = (p.transcript ? `Heard: “${p.transcript}”` : "") +
    (p.text_skipped ? ` (not read by the model: ${p.text_skipped})` : "");
}

function showTimeline(body) {
  $("result").hidden = true;
  const section = $("timeline");
  section.hidden = false;
  const { summary, segments } = body;
  const share = Object.entries(summary.share || {}).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]);
  const dims = DIMENSIONS.filter((d) => typeof summary[d] === "number");
  $("timeline-summary").textContent =
    `${seconds(summary.duration)} long, ${summary.segments} segments. ` +
    (share.length ? `Time per emotion: ${share.map(([k, v]) => `${k} ${percent(v)}`).join(", ")}. ` : "") +
    (dims.length ? `Mean ${dims.map((d) => `${d} ${summary[d].toFixed(2)}`).join(", ")}.` : "");
  const total = summary.duration || 1;
  $("strip").replaceChildren(...segments.map((s) => el("span", {
    title: `${seconds(s.start)}–${seconds(s.end)} ${s.label || ""}`,
    style: { left: `${100 * s.start / total}%`, width: `${100 * (s.end - s.start) / total}%`,
             background: colourOf(s.label || "neutral") },
  })));
  const labels = [...new Set(segments.map((s) => s.label).filter(Boolean))];
  $("timeline-legend").replaceChildren(...labels.map(legendItem));
  $("segments").replaceChildren(...segments.map((s) => {
    const what = s.label ? `${s.label} ${percent(s.probabilities[s.label])}`
      : DIMENSIONS.filter((d) => typeof s[d] === "number").map((d) => `${d} ${s[d].toFixed(2)}`).join(", ");
    const button = el("button", { type: "button", style: { borderLeftColor: colourOf(s.label || "neutral") },
                                  "aria-label": `Play ${seconds(s.start)} to ${seconds(s.end)}: ${what}` },
      el("span", { text: `${seconds(s.start)}–${seconds(s.end)}` }), el("span", { text: what }),
      el("span", { class: "words", text: s.transcript || "" }));
    button.addEventListener("click", () => playSegment(s, button));
    return el("li", {}, button);
  }));
}

function legendItem(name) {
  return el("li", {}, el("span", { class: "swatch", style: { background: colourOf(name) } }), name);
}

function playSegment(segment, button) {
  const player = $("player");
  if (!state.audioUrl) return;
  document.querySelectorAll(".segments button.playing").forEach((b) => b.classList.remove("playing"));
  button.classList.add("playing");
  player.currentTime = segment.start;
  state.stopAt = segment.end;
  player.play().catch((err) => showError(`The browser could not play this file: ${err.message}`));
}

function onTimeUpdate() {
  const player = $("player");
  if (state.stopAt !== null && player.currentTime >= state.stopAt) {
    player.pause();
    state.stopAt = null;
  }
}

// ------------------------------------------------------------------ recording

async function toggleRecord() {
  if (state.recorder) {
    state.recorder.stop();
    return;
  }
  showError("");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError("This browser gives the page no microphone here: browsers allow it only on https:// or " +
              "http://localhost pages.");
    return;
  }
  if (typeof MediaRecorder === "undefined") {
    showError("This browser cannot record audio (it has no MediaRecorder); upload a file instead.");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
  } catch (err) {
    showError(microphoneError(err));
    return;
  }
  const type = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus", "audio/mp4"]
    .find((t) => MediaRecorder.isTypeSupported(t));
  const recorder = new MediaRecorder(stream, type ? { mimeType: type } : {});
  const chunks = [];
  recorder.addEventListener("dataavailable", (e) => { if (e.data.size) chunks.push(e.data); });
  recorder.addEventListener("stop", () => {
    stream.getTracks().forEach((t) => t.stop());
    stopLive();
    state.recorder = null;
    setRecordButton(false);
    const mime = recorder.mimeType || type || "audio/webm";
    const extension = mime.includes("ogg") ? "ogg" : mime.includes("mp4") ? "m4a" : "webm";
    const file = new File(chunks, `recording.${extension}`, { type: mime });
    useAudio(file, "your recording");
    predict();
  });
  recorder.start(500);
  state.recorder = recorder;
  setRecordButton(true);
  setStatus("Recording… press Stop when done.");
  if ($("live").checked && !$("live").disabled) startLive(stream);
}

function microphoneError(err) {
  if (err.name === "NotAllowedError" || err.name === "SecurityError")
    return "The microphone was refused: allow it for this site in the browser's settings, then press Record again.";
  if (err.name === "NotFoundError" || err.name === "OverconstrainedError")
    return "No microphone was found: plug one in, or upload a file instead.";
  if (err.name === "NotReadableError")
    return "The microphone is busy or broken: close other programs using it and try again.";
  return `The microphone could not be opened: ${err.message}`;
}

function setRecordButton(on) {
  const button = $("record");
  button.textContent = on ? "Stop" : "Record";
  button.setAttribute("aria-pressed", String(on));
}

// ------------------------------------------------------------------ live mode

class Downsampler {
  // Box-filter decimation from the audio context's rate to 16 kHz: each output sample is the mean of the
  // input samples of its period.
  constructor(rate) { this.step = rate / LIVE_RATE; this.phase = 0; this.sum = 0; this.count = 0; }

  push(input) {
    const out = new Float32Array(Math.ceil(input.length / this.step) + 1);
    let n = 0;
    for (let i = 0; i < input.length; i++) {
      this.sum += input[i];
      this.count += 1;
      this.phase += 1;
      if (this.phase >= this.step) {
        out[n++] = this.sum / this.count;
        this.sum = 0;
        this.count = 0;
        this.phase -= this.step;
      }
    }
    return out.subarray(0, n);
  }
}

async function startLive(stream) {
  const asr = $("asr").checked && !$("asr-row").hidden;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/live?window=${$("window").value}&hop=1&asr=${asr ? "on" : "off"}`;
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  const context = new AudioContext();
  const live = { socket, context, points: [], names: [], queue: [], queued: 0, windows: 0, ended: false,
                 label: null };
  state.live = live;
  const panel = $("live-panel");
  panel.hidden = false;
  panel.dataset.windows = "0";
  $("live-now").textContent = "Waiting for the first second of audio…";
  $("live-announce").textContent = "";
  $("live-transcript").textContent = "";
  socket.addEventListener("message", (e) => onLiveMessage(live, JSON.parse(e.data)));
  socket.addEventListener("error", () => {
    if (!live.ended) showError("Live mode lost its connection to the server; the recording goes on.");
  });
  const downsampler = new Downsampler(context.sampleRate);
  const send = (samples) => {
    const pcm = downsampler.push(samples);
    live.queue.push(pcm);
    live.queued += pcm.length;
    if (live.queued >= LIVE_RATE / 10 && socket.readyState === WebSocket.OPEN) {
      const frame = new Float32Array(live.queued);
      let at = 0;
      for (const part of live.queue) { frame.set(part, at); at += part.length; }
      live.queue = [];
      live.queued = 0;
      socket.send(frame.buffer);
    }
  };
  const source = context.createMediaStreamSource(stream);
  const mute = context.createGain();
  mute.gain.value = 0;
  let node;
  try {
    await context.audioWorklet.addModule("/static/capture.js");
    node = new AudioWorkletNode(context, "capture");
    node.port.onmessage = (e) => send(e.data);
  } catch {
    node = context.createScriptProcessor(4096, 1, 1); // older browsers, and pages outside a secure context
    node.onaudioprocess = (e) => send(e.inputBuffer.getChannelData(0).slice());
  }
  source.connect(node);
  node.connect(mute);
  mute.connect(context.destination);
}

function stopLive() {
  const live = state.live;
  if (!live) return;
  state.live = null;
  live.ended = true;
  live.context.close();
  if (live.socket.readyState === WebSocket.OPEN) live.socket.send(JSON.stringify({ type: "end" }));
  else live.socket.close();
}

function onLiveMessage(live, message) {
  if (message.type === "error") {
    showError(`Live mode: ${message.detail}`);
    return;
  }
  if (message.type === "ready") {
    if (message.note) setStatus(`Recording… (no live transcript: ${message.note})`);
    return;
  }
  if (message.type !== "window") return;
  live.windows += 1;
  $("live-panel").dataset.windows = String(live.windows);
  const values = message.probabilities ||
    Object.fromEntries(DIMENSIONS.filter((d) => typeof message[d] === "number").map((d) => [d, message[d]]));
  if (!live.names.length) {
    live.names = Object.keys(values);
    $("chart-legend").replaceChildren(...live.names.map(legendItem));
    $("chart").setAttribute("aria-label", `${live.names.join(", ")} over the last ${LIVE_SECONDS} seconds`);
  }
  live.points.push({ t: message.t, values });
  live.points = live.points.filter((p) => p.t >= message.t - LIVE_SECONDS);
  const now = message.label ? `${message.label} ${percent(message.probabilities[message.label])}`
    : live.names.map((d) => `${d} ${values[d].toFixed(2)}`).join(", ");
  $("live-now").textContent = `${seconds(message.t)}: ${now} (answered in ${Math.round(message.latency_ms)} ms)`;
  if (message.label && message.label !== live.label) { // the live region speaks on a change of label only
    live.label = message.label;
    $("live-announce").textContent = `Now ${message.label}`;
  }
  if (message.transcript !== undefined) $("live-transcript").textContent = message.transcript
    ? `Heard: “${message.transcript}”` : "";
  drawChart(live, Boolean(message.probabilities));
}

function drawChart(live, probabilities) {
  const canvas = $("chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 720;
  const height = Math.round(width / 3);
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, width, height);
  const all = live.points.flatMap((p) => Object.values(p.values));
  const [low, high] = probabilities ? [0, 1] : [Math.min(...all) - 0.1, Math.max(...all) + 0.1];
  const last = live.points[live.points.length - 1].t;
  const span = Math.min(LIVE_SECONDS, Math.max(10, Math.ceil(last - live.points[0].t))); // grows to 30 s
  const x = (t) => 36 + (width - 44) * (1 - (last - t) / span);
  const y = (v) => 8 + (height - 28) * (1 - (v - low) / (high - low || 1));
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#5b6470";
  g.strokeStyle = "#e3e6ea";
  for (let i = 0; i <= 4; i++) {
    const v = low + (high - low) * i / 4;
    g.beginPath();
    g.moveTo(36, y(v));
    g.lineTo(width - 8, y(v));
    g.stroke();
    g.fillText(probabilities ? `${Math.round(v * 100)}%` : v.toFixed(1), 2, y(v) + 4);
  }
  g.fillText(`last ${span} s`, width - 70, height - 6);
  g.lineWidth = 2;
  for (const name of live.names) {
    g.strokeStyle = colourOf(name);
    g.beginPath();
    live.points.forEach((p, i) => (i ? g.lineTo : g.moveTo).call(g, x(p.t), y(p.values[name])));
    g.stroke();
  }
}

// ------------------------------------------------------------------ start

document.addEventListener("DOMContentLoaded", () => {
  $("form").addEventListener("submit", predict);
  $("file").addEventListener("change", onFileChosen);
  $("clear").addEventListener("click", clearAll);
  $("record").addEventListener("click", toggleRecord);
  $("player").addEventListener("timeupdate", onTimeUpdate);
  loadCard();
});
