/* wavetyp inspector: vanilla JS on canvas, no network. The page embeds, per track, its codes,
 * per-step NLL / entropy / varentropy, the windowed gap and z, and a compact top-of-p (and of q)
 * distribution per step (deflate + base64; see wavetyp/report/inspector.py). Audio and the
 * spectrogram are computed here from the codes. Open the page with #selftest to run the
 * self-test that tests/test_inspect.py reads back from the DOM. */
(function () {
"use strict";
const META = JSON.parse(document.getElementById("inspector-meta").textContent);
const COLORS = {
  wave: "#2b3a4a", nll: "#c62828", nllBand: "rgba(198,40,40,0.16)", ent: "#1f5fbf",
  entBand: "rgba(31,95,191,0.20)", gap: "#6a3d9a", exitGap: "rgba(198,40,40,0.18)",
  exitZ: "rgba(230,126,34,0.22)", prime: "rgba(120,120,120,0.16)", cursor: "#111",
  hover: "rgba(60,60,60,0.55)", p: "#5b8ccf", q: "#e67e22", chosen: "#c62828",
  silence: "#2e7d32", grid: "#e3e6ea", lane: "#fbfbfc", text: "#555"
};
const LANES = [
  {key: "wave", h: 54, title: "waveform (codes decoded)"},
  {key: "spec", h: 62, title: "spectrogram"},
  {key: "info", h: 84, title: "NLL of the chosen code (red), entropy H (blue) ± √varentropy"},
  {key: "gap", h: 50, title: "windowed gap = mean(NLL − H)"}
];
const LANE_GAP = 5, N_FFT = 256, HOP = 32, MIN_SPAN = 8, PAUSED_SLACK = 0.01;
const SPEC_FLOOR = -100, SPEC_RANGE = 90;   // dBFS per bin, black to white
const SR = META.tracks.length ? META.tracks[0].sample_rate : 8000;

// ------------------------------------------------------------------ decoding
const HALF = new Float32Array(65536);
for (let h = 0; h < 65536; h++) {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, f = h & 1023;
  HALF[h] = e === 0 ? s * f * Math.pow(2, -24) : e === 31 ? (f ? NaN : s * Infinity)
    : s * (1 + f / 1024) * Math.pow(2, e - 15);
}
const MULAW = new Float32Array(256);
for (let c = 0; c < 256; c++) {
  const x = (c / 255) * 2 - 1;
  MULAW[c] = Math.sign(x) * (Math.exp(Math.abs(x) * Math.log1p(255)) - 1) / 255;
}

function base64Bytes(text) {
  const bin = atob(text.trim()), out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

async function inflate(bytes) {
  if (typeof DecompressionStream === "undefined") throw new Error("this browser has no DecompressionStream");
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function decodeTrack(m) {
  const raw = await inflate(base64Bytes(document.getElementById("blob-" + m.id).textContent));
  const t = {meta: m, T: m.T};
  let off = 0;
  for (const [name, type, n] of m.layout) {
    if (type === "u8") { t[name] = raw.subarray(off, off + n); off += n; continue; }
    const a = type === "u16" ? new Uint16Array(n) : new Float32Array(n);
    for (let i = 0; i < n; i++) { const h = raw[off + 2 * i] | (raw[off + 2 * i + 1] << 8); a[i] = type === "u16" ? h : HALF[h]; }
    t[name] = a; off += 2 * n;
  }
  t.start = new Uint32Array(t.T + 1);
  for (let k = 0; k < t.T; k++) t.start[k + 1] = t.start[k] + t.count[k];
  t.wave = new Float32Array(t.T);
  for (let k = 0; k < t.T; k++) t.wave[k] = MULAW[t.codes[k]];
  t.sd = new Float32Array(t.T);
  for (let k = 0; k < t.T; k++) t.sd[k] = Math.sqrt(Math.max(0, t.var[k]));
  t.url = URL.createObjectURL(wavBlob(t.wave, m.sample_rate));
  return t;
}

function wavBlob(wave, sr) {
  const n = wave.length, buf = new ArrayBuffer(44 + 2 * n), v = new DataView(buf);
  const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  str(0, "RIFF"); v.setUint32(4, 36 + 2 * n, true); str(8, "WAVE"); str(12, "fmt ");
  v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, sr, true); v.setUint32(28, 2 * sr, true); v.setUint16(32, 2, true);
  v.setUint16(34, 16, true); str(36, "data"); v.setUint32(40, 2 * n, true);
  for (let i = 0; i < n; i++) v.setInt16(44 + 2 * i, Math.max(-32768, Math.min(32767, Math.round(wave[i] * 32767))), true);
  return new Blob([buf], {type: "audio/wav"});
}

/* probabilities of step k as {codes, p, q} (q null when the page has none of its own) */
function stepDist(t, k) {
  const j0 = t.start[k], j1 = t.start[k + 1], n = j1 - j0;
  const unq = b => b === 255 ? 0 : Math.pow(2, -b / META.log_steps);
  const out = {codes: t.dcode.subarray(j0, j1), p: new Float32Array(n), q: t.dq ? new Float32Array(n) : null};
  for (let j = 0; j < n; j++) {
    out.p[j] = unq(t.dp[j0 + j]);
    if (t.dq) out.q[j] = unq(t.dq[j0 + j]);
  }
  return out;
}

// ------------------------------------------------------------------ spectrogram
function fft(re, im) {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) { [re[i], re[j]] = [re[j], re[i]]; [im[i], im[j]] = [im[j], im[i]]; }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = -2 * Math.PI / len, wr = Math.cos(ang), wi = Math.sin(ang);
    for (let i = 0; i < n; i += len) {
      let cr = 1, ci = 0;
      for (let k = 0; k < len / 2; k++) {
        const a = i + k, b = a + len / 2, tr = re[b] * cr - im[b] * ci, ti = re[b] * ci + im[b] * cr;
        re[b] = re[a] - tr; im[b] = im[a] - ti; re[a] += tr; im[a] += ti;
        const nr = cr * wr - ci * wi; ci = cr * wi + ci * wr; cr = nr;
      }
    }
  }
}

const STOPS = [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21], [250, 193, 39], [252, 255, 164]];
function colormap(x) {
  const f = Math.max(0, Math.min(0.9999, x)) * (STOPS.length - 1), i = Math.floor(f), r = f - i;
  return STOPS[i].map((c, j) => Math.round(c + (STOPS[i + 1][j] - c) * r));
}

function spectrogram(t) {
  if (t.spec) return t.spec;
  const frames = Math.ceil(t.T / HOP), bins = N_FFT / 2 + 1, db = new Float32Array(frames * bins);
  const win = new Float64Array(N_FFT).map((_, i) => 0.5 - 0.5 * Math.cos(2 * Math.PI * i / N_FFT));
  // dB relative to the peak bin of a full-scale sine, shown from SPEC_FLOOR to SPEC_FLOOR + SPEC_RANGE
  const ref = 10 * Math.log10(Math.pow(win.reduce((a, b) => a + b, 0) / 2, 2));
  for (let f = 0; f < frames; f++) {
    const re = new Float64Array(N_FFT), im = new Float64Array(N_FFT), c = f * HOP - N_FFT / 2;
    for (let i = 0; i < N_FFT; i++) { const k = c + i; re[i] = k >= 0 && k < t.T ? t.wave[k] * win[i] : 0; }
    fft(re, im);
    for (let b = 0; b < bins; b++) {
      db[f * bins + b] = 10 * Math.log10(re[b] * re[b] + im[b] * im[b] + 1e-12) - ref;
    }
  }
  const cv = document.createElement("canvas");
  cv.width = frames; cv.height = bins;
  const ctx = cv.getContext("2d"), img = ctx.createImageData(frames, bins);
  for (let f = 0; f < frames; f++) for (let b = 0; b < bins; b++) {
    const [r, g, bl] = colormap((db[f * bins + b] - SPEC_FLOOR) / SPEC_RANGE), o = 4 * ((bins - 1 - b) * frames + f);
    img.data[o] = r; img.data[o + 1] = g; img.data[o + 2] = bl; img.data[o + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return (t.spec = cv);
}

// ------------------------------------------------------------------ state
const S = {group: null, cache: {}, rows: [], time: 0, audioSeen: -1, active: null, switching: false, seeking: false,
           log: false, follow: true, hoverS: null};
const HASH = new URLSearchParams(location.hash.slice(1));   // #selftest, #group=ID&track=NAME&t=SECONDS&span=SAMPLES
const audio = document.createElement("audio");
audio.controls = true; audio.preload = "auto";

const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) (k === "class" ? e.className = v : k.startsWith("on") ? e[k] = v : e.setAttribute(k, v));
  for (const k of kids) e.append(k);
  return e;
};
const fmt = (v, d = 3) => v === null || v === undefined || !isFinite(v) ? "n/a" : (v >= 0 ? "+" : "") + v.toFixed(d);
const fix = (v, d = 3) => v === null || v === undefined || !isFinite(v) ? "n/a" : v.toFixed(d);

function groupT() { return Math.max(1, ...S.rows.map(r => r.t.T)); }
function clampView(v0, v1) {
  const T = groupT(), span = Math.max(MIN_SPAN, Math.min(T, v1 - v0));
  v0 = Math.max(0, Math.min(T - span, v0));
  return [v0, v0 + span];
}
function setView(v0, v1) { S.group.view = clampView(v0, v1); drawAll(); }
function zoom(factor, centre) {
  const [v0, v1] = S.group.view, c = centre === undefined ? S.time * SR : centre;
  setView(c - (c - v0) * factor, c + (v1 - c) * factor);
}

/* the one place the cursor moves: from a seek on the page (user=true) or from the audio */
function setTime(t, user) {
  const T = groupT();
  S.time = Math.max(0, Math.min((T - 0.5) / SR, t));
  if (user && !S.switching) {      // the audio may land a little off (it seeks in blocks):
    S.seeking = true;               // the cursor stays where it was put until 'seeked'
    audio.currentTime = Math.min(S.time, isFinite(audio.duration) ? audio.duration : S.time);
    S.audioSeen = audio.currentTime;
    clearTimeout(S.seekTimer);
    S.seekTimer = setTimeout(seeked, 1000);
  }
  const s = S.time * SR, [v0, v1] = S.group.view;
  if (S.follow && !audio.paused && (s < v0 || s > v1)) { setView(s - 0.02 * (v1 - v0), s + 0.98 * (v1 - v0)); return; }
  drawCursors();
}

function seeked() { if (S.seeking) { S.seeking = false; S.audioSeen = audio.currentTime; } }
audio.addEventListener("seeked", seeked);

function tick() {
  if (!S.group || S.switching || S.seeking) return;
  const a = audio.currentTime;
  if (a === S.audioSeen) return;
  S.audioSeen = a;
  if (audio.paused && Math.abs(a - S.time) < PAUSED_SLACK) return;   // settling after our seek
  setTime(a, false);
}
setInterval(tick, 30);
(function frame() { if (!audio.paused) tick(); requestAnimationFrame(frame); })();

function setActive(row, play) {
  S.rows.forEach(r => r.el.classList.toggle("active", r === row));
  const same = S.active === row;
  S.active = row;
  document.getElementById("playing").textContent = "audio: " + row.t.meta.name;
  if (same) { if (play) audio.play().catch(() => {}); return; }
  S.switching = true;
  const resume = () => {
    audio.removeEventListener("loadedmetadata", resume);
    audio.currentTime = Math.min(S.time, audio.duration || S.time);
    S.audioSeen = audio.currentTime; S.switching = false;
    if (play) audio.play().catch(() => {});
  };
  audio.addEventListener("loadedmetadata", resume);
  audio.src = row.t.url;
  setTimeout(() => { if (S.switching) { S.switching = false; S.audioSeen = audio.currentTime; } }, 1500);
}

// ------------------------------------------------------------------ page
async function showGroup(id) {
  const g = META.groups.find(x => x.id === id);
  const tracks = await Promise.all(g.tracks.map(async tid => S.cache[tid] || (S.cache[tid] = await decodeTrack(META.tracks.find(m => m.id === tid)))));
  S.group = g; audio.pause();
  const box = document.getElementById("rows");
  box.textContent = "";
  S.rows = tracks.map(t => buildRow(t, box));
  const T = groupT();
  g.view = g.view || [0, T];
  let peak = 0.02;
  for (const r of S.rows) for (let k = 0; k < r.t.T; k++) peak = Math.max(peak, Math.abs(r.t.wave[k]));
  let ymax = 4, gmax = 0.5;
  for (const r of S.rows) {
    const sorted = Array.from(r.t.nll).filter(isFinite).sort((a, b) => a - b);
    ymax = Math.max(ymax, sorted[Math.floor(0.995 * (sorted.length - 1))] || 0);
    for (let k = 0; k < r.t.T; k++) ymax = Math.max(ymax, r.t.ent[k] + r.t.sd[k]);
    for (let k = 0; k < r.t.T; k++) gmax = Math.max(gmax, Math.abs(r.t.gapw[k]));
  }
  g.scale = {peak: peak * 1.05, ymax: Math.min(ymax, 20), gmax: Math.min(gmax * 1.1, 10)};
  setActive(S.rows[0], false);
  S.time = Math.min(S.time, (T - 1) / SR);
  document.getElementById("gtitle").textContent = META.groups.length > 1 ? "" : g.title;
  drawAll();
}

function buildRow(t, box) {
  const m = t.meta, s = m.summary || {};
  const height = LANES.reduce((a, l) => a + l.h + LANE_GAP, 0);
  const base = el("canvas"), top = el("canvas", {class: "top"});
  const stack = el("div", {class: "stack", style: `height:${height}px`}, base, top);
  const dcv = el("canvas"), info = el("div", {class: "distinfo"});
  const typical = s.in_typical_set ? el("span", {class: "ok"}, "typical") : el("span", {class: "bad"}, "not typical");
  const exits = el("div", {class: "exits"});
  const row = {t, base, top, stack, dcv, info, exits};
  const label = el("div", {class: "label"},
    el("div", {class: "name"}, m.name),
    el("div", {class: "meta"}, `${m.kind === "recording" ? "recording" : m.setting} · ${(m.T / m.sample_rate).toFixed(3)} s`),
    el("div", {class: "meta"}, `gap ${fmt(s.gap_bits)} bits/sample · z ${fmt(s.z, 1)} · `, typical),
    el("div", {class: "meta"}, `NLL ${fix(s.mean_nll_bits)} · H ${fix(s.mean_entropy_bits)} bits`),
    el("button", {onclick: () => setActive(row, true), title: "play this track from the cursor"}, "▶ play this"),
    el("div", {class: "meta"}, m.exits.length ? `leaves the typical set in ${m.exits.length} stretch(es), ${(100 * m.outside).toFixed(0)} % of the steps:` : "stays in the typical set (every window)"),
    exits);
  for (const e of m.exits) {
    exits.append(el("a", {onclick: () => { setView(e.start - 0.25 * (e.end - e.start) - 40, e.end + 0.25 * (e.end - e.start) + 40); setTime(e.start / SR, true); }},
      `${e.t0.toFixed(3)}–${e.t1.toFixed(3)} s: gap ${fmt(e.min_gap, 2)}, z ${fmt(e.peak_z, 1)} [${e.why}]`));
  }
  if (m.rescore_check !== null && m.rescore_check !== undefined)
    label.append(el("div", {class: "meta", title: "largest |NLL(rescored) − NLL(sampler's log)| over the steps"}, `rescoring matches the sampler's NLL to ${m.rescore_check.toExponential(1)} bits`));
  row.el = el("div", {class: "row", "data-track": m.id, "data-name": m.name}, label, stack, el("div", {class: "dist", "data-step": "-1"}, dcv, info));
  row.dist = row.el.lastChild;
  box.append(row.el);
  attachTrackEvents(row);
  return row;
}

function header() {
  const app = document.getElementById("app");
  app.textContent = "";
  const select = el("select", {id: "group", onchange: e => showGroup(e.target.value)});
  META.groups.forEach(g => select.append(el("option", {value: g.id}, g.title)));
  const btn = (text, title, fn) => el("button", {title, onclick: fn}, text);
  const logBox = el("input", {type: "checkbox", onchange: e => { S.log = e.target.checked; drawDists(); }});
  const followBox = el("input", {type: "checkbox", checked: "", onchange: e => { S.follow = e.target.checked; }});
  app.append(
    el("h1", {}, META.title),
    el("p", {class: "sub"}, `${META.tracks.length} track(s) in ${META.groups.length} group(s); checkpoint ${META.checkpoint || "?"}; made ${META.created || ""}. ` +
      `Each track was rescored with the model in one parallel pass (logits[t] predicts code t from codes before it): per step the page keeps the codes covering ` +
      `${(100 * META.mass).toFixed(0)} % of the untempered p_t (at most ${META.top_k}), the chosen code and the same for the sampled distribution q_t, ` +
      `probabilities rounded to 1/${META.log_steps} bit. NLL, H and varentropy are the sampler's own logs where the input had them. ` +
      `A window (${META.window_ms} ms, centred) leaves the typical set where its gap < −${META.epsilon} bits/sample or |z| > ${META.z_limit}.`),
    el("div", {class: "bar"}, audio, el("span", {id: "playing"}, ""),
      META.groups.length > 1 ? select : el("span"), el("span", {id: "gtitle"}),
      btn("−", "zoom out (key -)", () => zoom(2)), btn("+", "zoom in around the cursor (key +)", () => zoom(0.5)),
      btn("fit", "whole length (key 0)", () => setView(0, groupT())),
      btn("samples", "zoom to single samples around the cursor", () => setView(S.time * SR - 24, S.time * SR + 24)),
      el("label", {}, logBox, " log p"), el("label", {}, followBox, " follow"),
      el("span", {class: "readout", id: "readout"}, "")),
    el("div", {class: "help"}, "Click or drag on a track to seek · wheel: zoom at the mouse · shift+wheel or drag the strip below: pan · " +
      "←/→ one sample (shift: 10 ms) · space: play/pause · +/−/0: zoom. Distribution: 256 codes by mu-law value, silence code " +
      `${META.silence_code} marked green, chosen code red, p_t blue bars, sampled q_t orange ticks.`),
    el("div", {class: "legend help"}, ...[["nll", "NLL of the chosen code"], ["ent", "entropy H"], ["entBand", "H ± √varentropy"], ["gap", "windowed gap"],
      ["exitGap", "gap < −ε"], ["exitZ", "|z| > limit"], ["prime", "teacher-forced prime"]].map(([c, t]) => el("span", {}, el("i", {style: `background:${COLORS[c]}`}), t))),
    el("canvas", {class: "overview", id: "overview"}),
    el("div", {id: "rows"}));
  document.body.append(el("div", {id: "tip"}));
  attachOverviewEvents(document.getElementById("overview"));
}

// ------------------------------------------------------------------ drawing
function fitCanvas(cv) {
  const dpr = window.devicePixelRatio || 1, w = Math.max(10, cv.clientWidth), h = Math.max(10, cv.clientHeight);
  if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(h * dpr)) { cv.width = Math.round(w * dpr); cv.height = Math.round(h * dpr); }
  const ctx = cv.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return [ctx, w, h];
}
const xOf = (s, w) => (s - S.group.view[0]) / (S.group.view[1] - S.group.view[0]) * w;
const sOf = (x, w) => S.group.view[0] + x / w * (S.group.view[1] - S.group.view[0]);

/* per-pixel min / mean / max of arr over the view (or one point per sample when zoomed in) */
function columns(arr, w, T) {
  const [v0, v1] = S.group.view, spp = (v1 - v0) / w, out = [];
  if (spp <= 1) {
    for (let k = Math.max(0, Math.floor(v0)); k < Math.min(T, Math.ceil(v1)); k++)
      out.push({x0: xOf(k, w), x1: xOf(k + 1, w), lo: arr[k], hi: arr[k], mean: arr[k], k});
    return out;
  }
  for (let px = 0; px < w; px++) {
    const a = Math.floor(v0 + px * spp), b = Math.min(T, Math.floor(v0 + (px + 1) * spp));
    if (a >= T) break;
    let lo = Infinity, hi = -Infinity, sum = 0;
    for (let k = a; k < Math.max(b, a + 1); k++) { const v = arr[k]; lo = Math.min(lo, v); hi = Math.max(hi, v); sum += v; }
    out.push({x0: px, x1: px + 1, lo, hi, mean: sum / Math.max(1, Math.max(b, a + 1) - a), k: a});
  }
  return out;
}

function line(ctx, cols, y, color, width = 1.2) {
  ctx.strokeStyle = color; ctx.lineWidth = width; ctx.beginPath();
  cols.forEach((c, i) => { const Y = y(c.mean); if (i) ctx.lineTo(c.x0, Y); else ctx.moveTo(c.x0, Y); ctx.lineTo(c.x1, Y); });
  ctx.stroke();
}

function drawRow(row) {
  const [ctx, w] = fitCanvas(row.base), t = row.t, m = t.meta, sc = S.group.scale;
  const spp = (S.group.view[1] - S.group.view[0]) / w;
  ctx.clearRect(0, 0, w, row.base.clientHeight);
  ctx.font = "10px system-ui, sans-serif";
  let y0 = 0;
  for (const lane of LANES) {
    const h = lane.h;
    ctx.fillStyle = COLORS.lane; ctx.fillRect(0, y0, w, h);
    ctx.save(); ctx.beginPath(); ctx.rect(0, y0, w, h); ctx.clip();
    if (lane.key === "wave") {
      const mid = y0 + h / 2, y = v => mid - v / sc.peak * (h / 2 - 2), cols = columns(t.wave, w, t.T);
      ctx.strokeStyle = COLORS.grid; ctx.beginPath(); ctx.moveTo(0, mid); ctx.lineTo(w, mid); ctx.stroke();
      if (spp > 1) { ctx.fillStyle = COLORS.wave; cols.forEach(c => ctx.fillRect(c.x0, y(c.hi), 1, Math.max(1, y(c.lo) - y(c.hi)))); }
      else {
        ctx.strokeStyle = COLORS.wave; ctx.beginPath();
        cols.forEach((c, i) => { const X = (c.x0 + c.x1) / 2; if (i) ctx.lineTo(X, y(c.mean)); else ctx.moveTo(X, y(c.mean)); }); ctx.stroke();
        if (1 / spp > 5) cols.forEach(c => { ctx.fillStyle = COLORS.wave; ctx.fillRect((c.x0 + c.x1) / 2 - 1.5, y(c.mean) - 1.5, 3, 3); });
        if (1 / spp > 22) { ctx.fillStyle = COLORS.text; cols.forEach(c => ctx.fillText(String(t.codes[c.k]), (c.x0 + c.x1) / 2 - 8, y0 + 10)); }
      }
    } else if (lane.key === "spec") {
      const img = spectrogram(t), [v0, v1] = S.group.view, f0 = v0 / HOP + 0.5, fw = (v1 - v0) / HOP;
      const sw = Math.min(fw, img.width - f0);
      ctx.imageSmoothingEnabled = fw > w;
      if (sw > 0) ctx.drawImage(img, f0, 0, sw, img.height, 0, y0, sw / fw * w, h);
    } else if (lane.key === "info") {
      const y = v => y0 + h - 2 - Math.max(0, Math.min(v, sc.ymax)) / sc.ymax * (h - 4);
      ctx.fillStyle = COLORS.text; ctx.strokeStyle = COLORS.grid;
      for (let b = 2; b < sc.ymax; b += 2) { ctx.beginPath(); ctx.moveTo(0, y(b)); ctx.lineTo(w, y(b)); ctx.stroke(); }
      const nll = columns(t.nll, w, t.T), ent = columns(t.ent, w, t.T), sd = columns(t.sd, w, t.T);
      ctx.fillStyle = COLORS.entBand;
      ent.forEach((c, i) => { const a = y(c.mean + sd[i].mean), b = y(Math.max(0, c.mean - sd[i].mean)); ctx.fillRect(c.x0, a, Math.max(1, c.x1 - c.x0), b - a); });
      if (spp > 1) { ctx.fillStyle = COLORS.nllBand; nll.forEach(c => ctx.fillRect(c.x0, y(c.hi), 1, Math.max(1, y(c.lo) - y(c.hi)))); }
      line(ctx, nll, y, COLORS.nll); line(ctx, ent, y, COLORS.ent, 1.6);
      ctx.fillStyle = COLORS.text; ctx.fillText(`${sc.ymax.toFixed(0)} bits`, 2, y0 + 10);
    } else {
      const y = v => y0 + h / 2 - Math.max(-sc.gmax, Math.min(sc.gmax, v)) / sc.gmax * (h / 2 - 2);
      for (const e of m.exits) { ctx.fillStyle = e.why.includes("gap") ? COLORS.exitGap : COLORS.exitZ; ctx.fillRect(xOf(e.start, w), y0, Math.max(1, xOf(e.end, w) - xOf(e.start, w)), h); }
      ctx.strokeStyle = COLORS.grid; ctx.beginPath(); ctx.moveTo(0, y(0)); ctx.lineTo(w, y(0)); ctx.stroke();
      ctx.setLineDash([4, 3]); ctx.strokeStyle = "#999";
      for (const v of [-META.epsilon, META.epsilon]) { ctx.beginPath(); ctx.moveTo(0, y(v)); ctx.lineTo(w, y(v)); ctx.stroke(); }
      ctx.setLineDash([]);
      line(ctx, columns(t.gapw, w, t.T), y, COLORS.gap, 1.4);
      ctx.fillStyle = COLORS.text; ctx.fillText(`±${sc.gmax.toFixed(1)}`, 2, y0 + 10);
    }
    if (m.prime_len) { ctx.fillStyle = COLORS.prime; ctx.fillRect(0, y0, Math.max(0, xOf(m.prime_len, w)), h); }
    if (t.T < groupT()) { ctx.fillStyle = "#eceef2"; ctx.fillRect(xOf(t.T, w), y0, w, h); }
    ctx.restore();
    y0 += h + LANE_GAP;
  }
}

function drawCursor(row) {
  const [ctx, w, h] = fitCanvas(row.top), x = xOf(S.time * SR, w);
  ctx.clearRect(0, 0, w, h);
  if (S.hoverS !== null) { ctx.strokeStyle = COLORS.hover; ctx.setLineDash([3, 3]); ctx.beginPath(); ctx.moveTo(xOf(S.hoverS, w), 0); ctx.lineTo(xOf(S.hoverS, w), h); ctx.stroke(); ctx.setLineDash([]); }
  const spp = (S.group.view[1] - S.group.view[0]) / w, k = Math.floor(S.time * SR);
  if (spp < 0.5) { ctx.fillStyle = "rgba(0,0,0,0.07)"; ctx.fillRect(xOf(k, w), 0, xOf(k + 1, w) - xOf(k, w), h); }
  ctx.strokeStyle = COLORS.cursor; ctx.lineWidth = 1.5; ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, h); ctx.stroke();
  row.el.dataset.cursorX = x.toFixed(1);
}

function drawDist(row) {
  const t = row.t, m = t.meta, k = Math.max(0, Math.min(t.T - 1, Math.floor(S.time * SR)));
  const [ctx, w, h] = fitCanvas(row.dcv), d = stepDist(t, k), code = t.codes[k];
  const pad = 4, bw = (w - 2 * pad) / 256, base = h - 18, top = 12;
  let pmax = 0.02;
  d.p.forEach(v => { pmax = Math.max(pmax, v); }); if (d.q) d.q.forEach(v => { pmax = Math.max(pmax, v); });
  const hOf = v => S.log ? (v <= 0 ? 0 : Math.max(0, 1 + Math.log2(v) / 16)) * (base - top) : v / pmax * (base - top);
  ctx.clearRect(0, 0, w, h); ctx.font = "10px system-ui, sans-serif";
  const xs = c => pad + c * bw;
  ctx.strokeStyle = COLORS.silence; ctx.setLineDash([3, 2]); ctx.beginPath(); ctx.moveTo(xs(META.silence_code + 0.5), top - 2); ctx.lineTo(xs(META.silence_code + 0.5), base); ctx.stroke(); ctx.setLineDash([]);
  ctx.fillStyle = COLORS.silence; ctx.fillText("silence", xs(META.silence_code) + 3, top + 2);
  let shown = 0;
  for (let j = 0; j < d.codes.length; j++) {
    const c = d.codes[j], bh = hOf(d.p[j]); shown += d.p[j];
    ctx.fillStyle = c === code ? COLORS.chosen : COLORS.p;
    ctx.fillRect(xs(c), base - bh, Math.max(1, bw), bh);
  }
  if (d.q) for (let j = 0; j < d.codes.length; j++) {
    if (d.q[j] <= 0) continue;
    const c = d.codes[j], qh = hOf(d.q[j]);
    ctx.fillStyle = COLORS.q; ctx.fillRect(xs(c) - 1, base - qh - 1, bw + 2, 2);
  }
  ctx.fillStyle = COLORS.chosen; ctx.beginPath(); ctx.moveTo(xs(code + 0.5), base + 1); ctx.lineTo(xs(code + 0.5) - 4, base + 8); ctx.lineTo(xs(code + 0.5) + 4, base + 8); ctx.fill();
  ctx.strokeStyle = "#888"; ctx.beginPath(); ctx.moveTo(pad, base); ctx.lineTo(w - pad, base); ctx.stroke();
  ctx.fillStyle = COLORS.text;
  ctx.textAlign = "center";
  for (const c of [0, 64, 192, 255]) ctx.fillText(String(c), Math.min(w - 10, Math.max(8, xs(c + 0.5))), h - 4);
  ctx.fillStyle = COLORS.silence; ctx.fillText(String(META.silence_code), xs(META.silence_code + 0.5), h - 4);
  ctx.textAlign = "start"; ctx.fillStyle = COLORS.text;
  ctx.fillText(S.log ? "log p: 1 … 2⁻¹⁶" : `p: 0 … ${pmax.toFixed(2)}`, w - 90, top + 2);
  const j = Array.from(d.codes).indexOf(code), pc = j >= 0 ? d.p[j] : 0;
  const prime = k < m.prime_len ? "\nteacher-forced prime: this code was given, not sampled" : "";
  const qline = m.q === "own" ? (d.q && j >= 0 ? `q(chosen) ${fix(d.q[j], 3)} · ` : "") + m.q_note : m.q_note;
  row.info.textContent = `step ${k} · t ${(k / SR).toFixed(4)} s · chosen code ${code} (p ${fix(pc, 3)}, NLL ${fix(t.nll[k], 2)} bits)\n` +
    `H ${fix(t.ent[k], 2)} bits · √var ${fix(t.sd[k], 2)} · NLL−H ${fmt(t.nll[k] - t.ent[k], 2)} · window gap ${fmt(t.gapw[k], 2)}, z ${fmt(t.zw[k], 1)}\n` +
    `${d.codes.length} codes shown, ${Math.min(100, 100 * shown).toFixed(1)} % of p_t\n${qline}${prime}`;
  row.dist.dataset.step = String(k);
  row.dist.dataset.code = String(code);
}

function drawOverview() {
  const cv = document.getElementById("overview"), [ctx, w, h] = fitCanvas(cv), T = groupT(), t = S.active ? S.active.t : S.rows[0].t;
  ctx.clearRect(0, 0, w, h);
  const peak = S.group.scale.peak;
  ctx.fillStyle = "#9aa5b1";
  for (let px = 0; px < w; px++) {
    const a = Math.floor(px / w * T), b = Math.max(a + 1, Math.floor((px + 1) / w * T));
    let hi = 0; for (let k = a; k < Math.min(b, t.T); k++) hi = Math.max(hi, Math.abs(t.wave[k]));
    const v = hi / peak * (h / 2 - 3); ctx.fillRect(px, h / 2 - v, 1, Math.max(1, 2 * v));
  }
  S.rows.forEach((r, i) => r.t.meta.exits.forEach(e => { ctx.fillStyle = COLORS.nll; ctx.fillRect(e.start / T * w, h - 3 - 0, Math.max(1, (e.end - e.start) / T * w), 2); }));
  const [v0, v1] = S.group.view;
  ctx.fillStyle = "rgba(58,123,213,0.15)"; ctx.strokeStyle = "#3a7bd5";
  ctx.fillRect(v0 / T * w, 0, (v1 - v0) / T * w, h); ctx.strokeRect(v0 / T * w + 0.5, 0.5, Math.max(2, (v1 - v0) / T * w - 1), h - 1);
  ctx.strokeStyle = COLORS.cursor; ctx.beginPath(); ctx.moveTo(S.time * SR / T * w, 0); ctx.lineTo(S.time * SR / T * w, h); ctx.stroke();
}

function drawReadout() {
  const [v0, v1] = S.group.view, k = Math.floor(S.time * SR);
  document.getElementById("readout").textContent = `t ${S.time.toFixed(4)} s · step ${k} · view ${(v0 / SR).toFixed(3)}–${(v1 / SR).toFixed(3)} s (${Math.round(v1 - v0)} samples)`;
}
function drawDists() { S.rows.forEach(drawDist); }
function drawCursors() { S.rows.forEach(r => { drawCursor(r); drawDist(r); }); drawOverview(); drawReadout(); }
function drawAll() { if (!S.group) return; S.rows.forEach(drawRow); drawCursors(); }

// ------------------------------------------------------------------ interaction
function attachTrackEvents(row) {
  const cv = row.top, tip = () => document.getElementById("tip");
  const sAt = e => { const r = cv.getBoundingClientRect(); return sOf(e.clientX - r.left, r.width); };
  let drag = null;
  cv.addEventListener("mousedown", e => {
    if (e.button !== 0) return;
    drag = {x: e.clientX, view: S.group.view.slice(), pan: e.shiftKey};
    if (!drag.pan) setTime(sAt(e) / SR, true);
    e.preventDefault();
  });
  window.addEventListener("mousemove", e => {
    if (!drag) return;
    if (drag.pan) { const r = cv.getBoundingClientRect(), ds = (e.clientX - drag.x) / r.width * (drag.view[1] - drag.view[0]); setView(drag.view[0] - ds, drag.view[1] - ds); }
    else setTime(sAt(e) / SR, true);
  });
  window.addEventListener("mouseup", () => { drag = null; });
  cv.addEventListener("mousemove", e => {
    const s = sAt(e), k = Math.floor(s), t = row.t;
    S.hoverS = s; S.rows.forEach(drawCursor);
    const tp = tip();
    if (k < 0 || k >= t.T) { tp.style.display = "none"; return; }
    tp.textContent = `${t.meta.name}\nt ${(k / SR).toFixed(4)} s · step ${k}\ncode ${t.codes[k]}\nNLL ${fix(t.nll[k], 2)} bits · H ${fix(t.ent[k], 2)} bits\n` +
      `NLL−H ${fmt(t.nll[k] - t.ent[k], 2)} · window gap ${fmt(t.gapw[k], 3)} · z ${fmt(t.zw[k], 1)}`;
    tp.style.display = "block"; tp.style.left = (e.clientX + 14) + "px"; tp.style.top = (e.clientY + 12) + "px";
  });
  cv.addEventListener("mouseleave", () => { S.hoverS = null; tip().style.display = "none"; S.rows.forEach(drawCursor); });
  cv.addEventListener("wheel", e => {
    e.preventDefault();
    const r = cv.getBoundingClientRect(), [v0, v1] = S.group.view;
    if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) { const ds = (e.deltaX || e.deltaY) / r.width * (v1 - v0); setView(v0 + ds, v1 + ds); }
    else zoom(Math.pow(1.0015, e.deltaY), sAt(e));
  }, {passive: false});
}

function attachOverviewEvents(cv) {
  let drag = null;
  const sAt = e => { const r = cv.getBoundingClientRect(); return (e.clientX - r.left) / r.width * groupT(); };
  cv.addEventListener("mousedown", e => {
    const s = sAt(e), [v0, v1] = S.group.view;
    if (s < v0 || s > v1) setView(s - (v1 - v0) / 2, s + (v1 - v0) / 2);
    drag = {s, view: S.group.view.slice()};
    e.preventDefault();
  });
  window.addEventListener("mousemove", e => { if (drag) { const ds = sAt(e) - drag.s; setView(drag.view[0] + ds, drag.view[1] + ds); } });
  window.addEventListener("mouseup", () => { drag = null; });
}

document.addEventListener("keydown", e => {
  if (!S.group || e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
  const step = e.shiftKey ? SR / 100 : 1, k = Math.floor(S.time * SR);
  if (e.key === "ArrowRight") setTime((k + step + 0.5) / SR, true);
  else if (e.key === "ArrowLeft") setTime((Math.max(0, k - step) + 0.5) / SR, true);
  else if (e.key === " ") { if (audio.paused) audio.play().catch(() => {}); else audio.pause(); }
  else if (e.key === "+" || e.key === "=") zoom(0.5);
  else if (e.key === "-") zoom(2);
  else if (e.key === "0") setView(0, groupT());
  else return;
  e.preventDefault();
});
window.addEventListener("resize", drawAll);

// ------------------------------------------------------------------ self-test (#selftest)
const sleep = ms => new Promise(r => setTimeout(r, ms));
async function waitFor(cond, ms = 3000) { for (let i = 0; i < ms / 20 && !cond(); i++) await sleep(20); return cond(); }

async function selftest() {
  const out = {errors: S.errors, checks: {}};
  const row = S.rows[0], T = row.t.T, step = () => Number(row.dist.dataset.step), cx = () => Number(row.el.dataset.cursorX);
  out.audio_ready = await waitFor(() => audio.readyState >= 1 && !S.switching, 15000);   // a cold browser may take seconds
  out.audio_duration = audio.duration;
  // 1. the audio's playhead moves the cursor; the distribution panel follows it
  const x0 = cx(), target = Math.floor(0.4 * T), t = (target + 0.5) / SR;
  let done = false;
  audio.addEventListener("seeked", () => { done = true; }, {once: true});
  audio.currentTime = t;                       // as the player's own controls would
  await waitFor(() => done, 2000);
  await sleep(100);
  const at = Math.floor(audio.currentTime * SR);  // where the audio landed (it seeks in blocks)
  out.seek_audio = {set: t, audio_time: audio.currentTime, expected_step: at, panel_step: step(), cursor_x_before: x0, cursor_x_after: cx()};
  out.checks.audio_landed_near = Math.abs(at - target) <= 0.005 * SR;
  out.checks.cursor_follows_audio = step() === at;
  out.checks.cursor_moved = cx() !== x0;
  out.checks.every_row_follows = S.rows.every(r => Number(r.dist.dataset.step) === Math.min(r.t.T - 1, at));
  // 2. a click on a track seeks the audio
  const r = row.top.getBoundingClientRect(), x = Math.round(r.left + 0.75 * r.width), y = Math.round(r.top + 30);
  const expect = sOf(x - r.left, r.width), x1 = cx();   // mouse events carry whole pixels
  row.top.dispatchEvent(new MouseEvent("mousedown", {clientX: x, clientY: y, button: 0, bubbles: true}));
  window.dispatchEvent(new MouseEvent("mouseup", {clientX: x, clientY: y, button: 0, bubbles: true}));
  await sleep(300);
  out.click = {expected_time: expect / SR, audio_time: audio.currentTime, cursor_time: S.time, panel_step: step(), expected_step: Math.floor(expect), cursor_x_before: x1, cursor_x_after: cx()};
  out.checks.click_seeks_audio = Math.abs(audio.currentTime - expect / SR) < 0.005;
  out.checks.click_puts_cursor = Math.abs(S.time - expect / SR) < 0.5 / SR && Math.abs(cx() - (x - r.left)) < 1;
  out.checks.click_moves_panel = step() === Math.min(T - 1, Math.floor(expect));
  // 3. hovering shows the step; zooming reaches single samples
  row.top.dispatchEvent(new MouseEvent("mousemove", {clientX: r.left + 0.25 * r.width, clientY: y, bubbles: true}));
  const tip = document.getElementById("tip").textContent;
  out.checks.hover_tooltip = /step \d+/.test(tip) && /code \d+/.test(tip) && /NLL/.test(tip);
  out.tooltip = tip;
  setView(S.time * SR - 10, S.time * SR + 10);
  out.checks.zoom_to_samples = S.group.view[1] - S.group.view[0] <= 32;
  setView(0, groupT());
  // 4. play (informative: headless browsers may refuse)
  try { await Promise.race([audio.play(), sleep(500)]); await sleep(200); out.play = {paused: audio.paused, time: audio.currentTime}; audio.pause(); }
  catch (err) { out.play = {error: String(err)}; }
  // 5. another group (if any) builds its rows on its own time axis
  if (META.groups.length > 1) {
    const g = META.groups[1];
    await showGroup(g.id);
    setTime(0.5 * groupT() / SR, true);
    out.checks.group_switch = S.rows.length === g.tracks.length && S.rows.every(r => Number(r.dist.dataset.step) === Math.min(r.t.T - 1, Math.floor(S.time * SR)));
    await showGroup(META.groups[0].id);
  }
  out.pass = Object.values(out.checks).every(Boolean) && !S.errors.length;
  return out;
}

// ------------------------------------------------------------------ start
S.errors = [];
window.addEventListener("error", e => S.errors.push(String(e.message)));
/* a place from the URL: #group=ID&track=NAME&t=SECONDS&span=SAMPLES (each part optional);
   track selects that row (its audio plays) and scrolls it into view */
async function goTo(h) {
  const g0 = META.groups.find(g => g.id === h.get("group")) || S.group || META.groups[0];
  if (document.getElementById("group")) document.getElementById("group").value = g0.id;
  if (S.group !== g0) await showGroup(g0.id);
  const row = S.rows.find(r => r.t.meta.name === h.get("track"));
  if (row) { setActive(row, false); row.el.scrollIntoView({block: "nearest"}); }
  const t0 = Number(h.get("t")), span = Number(h.get("span"));
  if (h.has("span") && span > 0) setView(t0 * SR - span / 2, t0 * SR + span / 2);
  if (h.has("t") && isFinite(t0)) setTime(t0, true);
}
async function main() {
  try {
    header();
    if (!META.groups.length) throw new Error("no tracks in this page");
    await goTo(HASH);
    window.addEventListener("hashchange", () => goTo(new URLSearchParams(location.hash.slice(1))).catch(err => S.errors.push(String(err))));
    if (HASH.has("selftest")) {
      const res = await selftest(), pre = document.getElementById("selftest");
      pre.textContent = JSON.stringify(res); pre.hidden = false; pre.dataset.done = "1";
      document.title = res.pass ? "selftest: pass" : "selftest: FAIL";
    }
  } catch (err) {
    S.errors.push(String(err && err.stack || err));
    document.getElementById("app").prepend(el("p", {class: "err"}, "inspector failed: " + err));
    const pre = document.getElementById("selftest");
    pre.textContent = JSON.stringify({pass: false, errors: S.errors}); pre.hidden = false; pre.dataset.done = "1";
  }
}
main();
})();
