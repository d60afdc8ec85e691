// sam2edge page: plain JavaScript, no build step. Talks only to the server's public endpoints:
// /sam2/embed_image, /sam2/segment_image (Roboflow format, masks as COCO RLE), /video/sessions/...
"use strict";

const $ = (id) => document.getElementById(id);
const MASK_RGBA = [30, 144, 255, 150];
const OBJ_COLORS = [[30, 144, 255], [255, 99, 71], [60, 179, 113], [238, 130, 238], [255, 215, 0], [0, 206, 209]];
const MAX_W = 960;

// ---- HTTP ---------------------------------------------------------------------------------
const keyInput = $("api-key");
keyInput.value = localStorage.getItem("sam2edge-key") || "";
keyInput.addEventListener("change", () => localStorage.setItem("sam2edge-key", keyInput.value));

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (keyInput.value) h["Authorization"] = "Bearer " + keyInput.value;
  return h;
}

async function call(method, path, body, isForm) {
  const opts = { method, headers: headers(isForm || body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) opts.body = isForm ? body : JSON.stringify(body);
  const resp = await fetch(path, opts);
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(data.message || resp.status + " " + resp.statusText);
  return data;
}

// ---- COCO RLE (pycocotools' compressed string) -------------------------------------------
function rleRuns(counts) {
  const runs = [];
  let p = 0;
  while (p < counts.length) {
    let x = 0, k = 0, more = 1;
    while (more) {
      const c = counts.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (runs.length > 2) x += runs[runs.length - 2];
    runs.push(x);
  }
  return runs;
}

// -> Uint8Array of h*w, row-major, 1 where the mask is set (RLE runs go down the columns).
function rleDecode(rle) {
  const [h, w] = rle.size;
  const out = new Uint8Array(h * w);
  let idx = 0, value = 0;
  for (const run of rleRuns(rle.counts)) {
    if (value) {
      for (let i = idx; i < idx + run; i++) out[(i % h) * w + Math.floor(i / h)] = 1;
    }
    idx += run;
    value = 1 - value;
  }
  return out;
}

// ---- drawing ----------------------------------------------------------------------------
function fitCanvases(canvases, w, h) {
  const scale = Math.min(1, MAX_W / w, (window.innerHeight * 0.7) / h);
  const dw = Math.max(1, Math.round(w * scale)), dh = Math.max(1, Math.round(h * scale));
  for (const c of canvases) { c.width = dw; c.height = dh; }
  return scale;
}

// masks: [{bits: Uint8Array, color: [r,g,b], alpha}] at w x h image pixels, drawn scaled onto canvas.
function drawMasks(canvas, w, h, masks) {
  const off = document.createElement("canvas");
  off.width = w; off.height = h;
  const octx = off.getContext("2d");
  const img = octx.createImageData(w, h);
  for (const m of masks) {
    for (let i = 0; i < m.bits.length; i++) {
      if (!m.bits[i]) continue;
      img.data[4 * i] = m.color[0]; img.data[4 * i + 1] = m.color[1]; img.data[4 * i + 2] = m.color[2];
      img.data[4 * i + 3] = m.alpha;
    }
  }
  octx.putImageData(img, 0, 0);
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
}

function drawPrompts(canvas, scale, points, box, drag) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const rect = (b, dash) => {
    ctx.setLineDash(dash); ctx.strokeStyle = "#ffd400"; ctx.lineWidth = 2;
    ctx.strokeRect(b[0] * scale, b[1] * scale, (b[2] - b[0]) * scale, (b[3] - b[1]) * scale);
  };
  if (box) rect(box, []);
  if (drag) rect(drag, [5, 4]);
  for (const p of points) {
    ctx.beginPath();
    ctx.arc(p.x * scale, p.y * scale, 5, 0, 2 * Math.PI);
    ctx.fillStyle = p.positive ? "#22c55e" : "#ef4444";
    ctx.fill(); ctx.strokeStyle = "#fff"; ctx.lineWidth = 1.5; ctx.setLineDash([]); ctx.stroke();
  }
}

function setStatus(el, text, isError) {
  el.textContent = text;
  el.classList.toggle("error", !!isError);
}

function download(name, blob) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function maskPng(bits, w, h, name) {
  const c = document.createElement("canvas");
  c.width = w; c.height = h;
  const ctx = c.getContext("2d");
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < bits.length; i++) {
    const v = bits[i] ? 255 : 0;
    img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = v; img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  c.toBlob((blob) => download(name, blob), "image/png");
}

// Mouse on a prompt canvas: left click, right click, or drag (a box) in image pixels.
function bindPointer(canvas, getScale, onPoint, onBox, onDrag) {
  let start = null;
  const pos = (e) => {
    const r = canvas.getBoundingClientRect();
    return { x: (e.clientX - r.left) / getScale(), y: (e.clientY - r.top) / getScale() };
  };
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("mousedown", (e) => { start = Object.assign(pos(e), { button: e.button }); });
  canvas.addEventListener("mousemove", (e) => {
    if (start && start.button === 0 && onDrag) {
      const p = pos(e);
      onDrag([Math.min(start.x, p.x), Math.min(start.y, p.y), Math.max(start.x, p.x), Math.max(start.y, p.y)]);
    }
  });
  canvas.addEventListener("mouseup", (e) => {
    if (!start) return;
    const p = pos(e), s = start;
    start = null;
    const moved = Math.hypot((p.x - s.x) * getScale(), (p.y - s.y) * getScale()) > 6;
    if (moved && s.button === 0 && onBox) onBox([Math.min(s.x, p.x), Math.min(s.y, p.y), Math.max(s.x, p.x), Math.max(s.y, p.y)]);
    else onPoint({ x: s.x, y: s.y, positive: s.button === 0 });
  });
}

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

// ---- image tab --------------------------------------------------------------------------
const img = { id: null, w: 0, h: 0, scale: 1, points: [], box: null, masks: [], chosen: 0, seq: 0, bits: null };
const imageStatus = $("image-status");

$("image-file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  const dataUrl = await new Promise((ok) => { const r = new FileReader(); r.onload = () => ok(r.result); r.readAsDataURL(file); });
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  Object.assign(img, { id: null, w: bitmap.width, h: bitmap.height, points: [], box: null, masks: [], chosen: 0, bits: null });
  img.scale = fitCanvases([$("image-canvas"), $("mask-canvas"), $("prompt-canvas")], img.w, img.h);
  $("image-canvas").getContext("2d").drawImage(bitmap, 0, 0, $("image-canvas").width, $("image-canvas").height);
  renderImage();
  setStatus(imageStatus, "embedding…");
  try {
    const t0 = performance.now();
    const res = await call("POST", "/sam2/embed_image", { image: { type: "base64", value: dataUrl.split(",")[1] } });
    img.id = res.image_id;
    setStatus(imageStatus, `ready: ${img.w}x${img.h}, embedded in ${Math.round(performance.now() - t0)} ms. Click on the image.`);
  } catch (err) { setStatus(imageStatus, "embedding failed: " + err.message, true); }
  for (const id of ["image-clear", "image-undo"]) $(id).disabled = false;
});

async function segmentImage() {
  if (!img.id) return;
  renderPromptsImage();
  if (!img.points.length && !img.box) { img.masks = []; img.bits = null; renderImage(); return; }
  const seq = ++img.seq;
  const prompt = {};
  if (img.points.length) prompt.points = img.points;
  if (img.box) {
    const [x0, y0, x1, y1] = img.box;
    prompt.box = { x: (x0 + x1) / 2, y: (y0 + y1) / 2, width: x1 - x0, height: y1 - y0 };
  }
  setStatus(imageStatus, "segmenting…");
  try {
    const t0 = performance.now();
    const res = await call("POST", "/sam2/segment_image", {
      image_id: img.id, prompts: [prompt], multimask_output: $("multimask").checked, format: "rle",
      include_alternatives: true, save_logits_to_cache: true, load_logits_from_cache: true,
    });
    if (seq !== img.seq) return; // a newer click is on its way
    const p = res.predictions[0];
    img.masks = [{ rle: p.masks, confidence: p.confidence }].concat(p.alternatives || []);
    img.masks.sort((a, b) => b.confidence - a.confidence);
    selectMask(0);
    const area = img.bits.reduce((a, b) => a + b, 0);
    setStatus(imageStatus, `mask: ${area} px, score ${p.confidence.toFixed(3)}, ${Math.round(performance.now() - t0)} ms`);
  } catch (err) { setStatus(imageStatus, "segmentation failed: " + err.message, true); }
}

function selectMask(i) {
  img.chosen = i;
  img.bits = rleDecode(img.masks[i].rle);
  renderImage();
  const list = $("mask-list");
  list.innerHTML = "";
  img.masks.forEach((m, j) => {
    const b = document.createElement("button");
    b.textContent = `${j === 0 ? "best" : "alt " + j} · ${m.confidence.toFixed(3)}`;
    b.className = j === i ? "chosen" : "";
    b.addEventListener("click", () => selectMask(j));
    list.appendChild(b);
  });
  for (const id of ["image-png", "image-json"]) $(id).disabled = false;
}

function renderImage() {
  drawMasks($("mask-canvas"), img.w, img.h, img.bits ? [{ bits: img.bits, color: MASK_RGBA, alpha: MASK_RGBA[3] }] : []);
  if (!img.bits) $("mask-list").innerHTML = "";
  renderPromptsImage();
}

function renderPromptsImage(drag) { drawPrompts($("prompt-canvas"), img.scale, img.points, img.box, drag); }

bindPointer($("prompt-canvas"), () => img.scale,
  (p) => { img.points.push({ x: clamp(p.x, 0, img.w), y: clamp(p.y, 0, img.h), positive: p.positive }); segmentImage(); },
  (b) => { img.box = [clamp(b[0], 0, img.w), clamp(b[1], 0, img.h), clamp(b[2], 0, img.w), clamp(b[3], 0, img.h)]; segmentImage(); },
  (b) => renderPromptsImage(b));

$("image-clear").addEventListener("click", () => { img.points = []; img.box = null; img.masks = []; img.bits = null; renderImage(); });
$("image-undo").addEventListener("click", () => { if (img.points.length) img.points.pop(); else img.box = null; segmentImage(); });
$("multimask").addEventListener("change", segmentImage);
$("image-png").addEventListener("click", () => img.bits && maskPng(img.bits, img.w, img.h, "mask.png"));
$("image-json").addEventListener("click", () => download("masks.json", new Blob([JSON.stringify({
  image_id: img.id, size: [img.h, img.w], points: img.points, box: img.box,
  masks: img.masks.map((m) => ({ rle: m.rle, confidence: m.confidence })),
}, null, 1)], { type: "application/json" })));

// ---- video tab --------------------------------------------------------------------------
const vid = { session: null, w: 0, h: 0, n: 0, fps: 10, scale: 1, frame: 0, results: {}, prompts: {}, frames: {},
  propagating: null, playing: false };
const videoStatus = $("video-status");
const objId = () => parseInt($("obj-id").value || "1", 10);
const colorOf = (id) => OBJ_COLORS[((id % OBJ_COLORS.length) + OBJ_COLORS.length) % OBJ_COLORS.length];

$("video-file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  if (vid.session) call("DELETE", "/video/sessions/" + vid.session).catch(() => {});
  setStatus(videoStatus, "uploading…");
  const form = new FormData();
  form.append("file", file);
  try {
    const info = await call("POST", "/video/sessions", form, true);
    Object.assign(vid, { session: info.session_id, w: info.width, h: info.height, n: info.num_frames || 1,
      fps: info.fps || 10, frame: 0, results: {}, prompts: {}, frames: {} });
    vid.scale = fitCanvases([$("frame-canvas"), $("vmask-canvas"), $("vprompt-canvas")], vid.w, vid.h);
    const slider = $("frame-slider");
    slider.max = String(vid.n - 1); slider.value = "0"; slider.disabled = false;
    for (const id of ["new-object", "propagate", "play", "video-json", "video-png"]) $(id).disabled = false;
    await showFrame(0);
    setStatus(videoStatus, `session ${info.session_id.slice(0, 8)}: ${info.num_frames} frames ${info.width}x${info.height}. Click on an object.`);
  } catch (err) { setStatus(videoStatus, "upload failed: " + err.message, true); }
});

async function frameBitmap(i) {
  if (!vid.frames[i]) {
    vid.frames[i] = fetch(`/video/sessions/${vid.session}/frames/${i}`, { headers: headers() })
      .then((r) => { if (!r.ok) throw new Error("frame " + i + ": " + r.status); return r.blob(); })
      .then((b) => createImageBitmap(b));
  }
  return vid.frames[i];
}

async function showFrame(i) {
  vid.frame = i;
  $("frame-slider").value = String(i);
  const bmp = await frameBitmap(i);
  if (vid.frame !== i) return;
  $("frame-canvas").getContext("2d").drawImage(bmp, 0, 0, $("frame-canvas").width, $("frame-canvas").height);
  renderVideoMasks();
}

function renderVideoMasks() {
  const res = vid.results[vid.frame];
  const masks = res ? res.objects.filter((o) => o.area > 0).map((o) => ({ bits: rleDecode(o.mask), color: colorOf(o.obj_id), alpha: 150 })) : [];
  drawMasks($("vmask-canvas"), vid.w, vid.h, masks);
  const pts = (vid.prompts[vid.frame] || {})[objId()] || [];
  drawPrompts($("vprompt-canvas"), vid.scale, pts, null, null);
}

bindPointer($("vprompt-canvas"), () => vid.scale, async (p) => {
  if (!vid.session || vid.propagating) return;
  const byObj = vid.prompts[vid.frame] = vid.prompts[vid.frame] || {};
  const pts = byObj[objId()] = byObj[objId()] || [];
  pts.push({ x: clamp(p.x, 0, vid.w), y: clamp(p.y, 0, vid.h), positive: p.positive });
  renderVideoMasks();
  setStatus(videoStatus, "segmenting…");
  try {
    const res = await call("POST", `/video/sessions/${vid.session}/prompts`, { frame_idx: vid.frame, obj_id: objId(), points: pts });
    vid.results[res.frame_idx] = res;
    renderVideoMasks();
    const o = res.objects.find((x) => x.obj_id === objId());
    setStatus(videoStatus, `frame ${res.frame_idx}, object ${objId()}: mask ${o ? o.area : 0} px`);
  } catch (err) { setStatus(videoStatus, "prompt failed: " + err.message, true); }
}, null, null);

$("frame-slider").addEventListener("input", (e) => showFrame(parseInt(e.target.value, 10)));
$("obj-id").addEventListener("change", renderVideoMasks);
$("new-object").addEventListener("click", () => {
  const ids = Object.values(vid.prompts).flatMap((o) => Object.keys(o).map(Number));
  $("obj-id").value = String((ids.length ? Math.max(...ids) : objId()) + 1);
  renderVideoMasks();
});

$("propagate").addEventListener("click", async () => {
  if (!vid.session || vid.propagating) return;
  const ctrl = new AbortController();
  vid.propagating = ctrl;
  $("cancel").disabled = false; $("propagate").disabled = true;
  setStatus(videoStatus, "propagating…");
  let frames = 0, last = null;
  try {
    const resp = await fetch(`/video/sessions/${vid.session}/propagate`, { method: "POST", signal: ctrl.signal,
      headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify({ start_frame_idx: 0 }) });
    if (!resp.ok) throw new Error((await resp.json().catch(() => ({}))).message || String(resp.status));
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (msg.event === "frame") {
          vid.results[msg.frame_idx] = msg; frames++;
          showFrame(msg.frame_idx);
          setStatus(videoStatus, `propagating… frame ${msg.frame_idx}`);
        } else last = msg;
      }
    }
    if (last && last.event === "error") throw new Error(last.message);
    setStatus(videoStatus, `${last ? last.event : "ended"}: ${frames} frames tracked` + (last && last.time ? ` in ${last.time.toFixed(1)} s` : ""));
  } catch (err) {
    setStatus(videoStatus, err.name === "AbortError" ? "cancelled" : "propagation failed: " + err.message, err.name !== "AbortError");
  } finally {
    vid.propagating = null;
    $("cancel").disabled = true; $("propagate").disabled = false;
  }
});

$("cancel").addEventListener("click", () => {
  if (!vid.propagating) return;
  call("POST", `/video/sessions/${vid.session}/cancel`).catch(() => {});
});

$("play").addEventListener("click", async () => {
  if (vid.playing) { vid.playing = false; $("play").textContent = "Play"; return; }
  vid.playing = true; $("play").textContent = "Stop";
  for (let i = 0; i < vid.n && vid.playing; i++) {
    const t0 = performance.now();
    await showFrame(i);
    await new Promise((ok) => setTimeout(ok, Math.max(0, 1000 / vid.fps - (performance.now() - t0))));
  }
  vid.playing = false; $("play").textContent = "Play";
});

$("video-png").addEventListener("click", () => {
  const res = vid.results[vid.frame];
  const o = res && res.objects.find((x) => x.obj_id === objId());
  if (o) maskPng(rleDecode(o.mask), vid.w, vid.h, `frame${vid.frame}_object${o.obj_id}.png`);
});
$("video-json").addEventListener("click", () => download("video_masks.json", new Blob([JSON.stringify({
  session: vid.session, size: [vid.h, vid.w], frames: Object.values(vid.results),
})], { type: "application/json" })));

// ---- tabs and server info ------------------------------------------------------------------
for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
    $("tab-image").classList.toggle("hidden", tab.dataset.tab !== "image");
    $("tab-video").classList.toggle("hidden", tab.dataset.tab !== "video");
  });
}

fetch("/readyz").then((r) => r.json()).then((r) => {
  $("model-info").textContent = r.ready ? `${r.model} · ${r.backend}${r.video ? "" : " · images only"}` : r.message;
}).catch(() => { $("model-info").textContent = "server unreachable"; });
