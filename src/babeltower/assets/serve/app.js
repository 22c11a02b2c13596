// babeltower web demo: tabs, form submission with job polling and a progress bar, and
// an in-browser recorder that encodes 16-bit PCM WAV (which the server's soundfile reads;
// MediaRecorder's WebM/Opus it could not). Nothing here talks to any host but this server.
"use strict";

const POLL_MS = 150;

function selectTab(name) {
  const buttons = document.querySelectorAll('[role="tab"]');
  let found = false;
  buttons.forEach((b) => { if (b.dataset.tab === name) found = true; });
  if (!found) return;
  buttons.forEach((b) => {
    const on = b.dataset.tab === name;
    b.setAttribute("aria-selected", on ? "true" : "false");
    document.getElementById(b.getAttribute("aria-controls")).hidden = !on;
  });
}

function showError(form, message) {
  const box = form.querySelector(".error");
  box.textContent = message;
  box.hidden = false;
}

async function pollJob(form, job) {
  const bar = form.querySelector("progress");
  const status = form.querySelector(".status");
  for (;;) {
    if (job.total > 0) { bar.max = job.total; bar.value = job.done; } else { bar.removeAttribute("value"); }
    status.textContent = `${job.message} (${job.seconds.toFixed(1)} s)`;
    if (job.state === "done" || job.state === "error") return job;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    const response = await fetch(`/api/jobs/${job.job}`);
    if (!response.ok) throw new Error((await response.json()).error || `HTTP ${response.status}`);
    job = await response.json();
  }
}

async function submitForm(event) {
  event.preventDefault();
  const form = event.target;
  const button = form.querySelector("button.run");
  const bar = form.querySelector("progress");
  const status = form.querySelector(".status");
  const result = form.querySelector(".result");
  form.querySelector(".error").hidden = true;
  result.innerHTML = "";  // an old result must not pass for the answer to the new input
  button.disabled = true;
  bar.hidden = false;
  bar.value = 0;
  form.dataset.state = "running";
  try {
    const response = await fetch(`/api/run/${form.dataset.tab}`, { method: "POST", body: new FormData(form) });
    const first = await response.json();
    if (!response.ok) throw new Error(first.error || `HTTP ${response.status}`);
    const job = await pollJob(form, first);
    if (job.state === "done") {
      result.innerHTML = job.result.html;
      form.dataset.state = "done";
    } else {
      showError(form, job.error);
      form.dataset.state = "error";
    }
    status.textContent = job.message;
  } catch (error) {
    showError(form, `The request failed: ${error.message}`);
    status.textContent = "";
    form.dataset.state = "error";
  } finally {
    button.disabled = false;
    bar.hidden = true;
  }
}

// --- recorder: microphone -> mono 16-bit PCM WAV -> the tab's file input ---------------

function encodeWav(chunks, rate) {
  const length = chunks.reduce((n, c) => n + c.length, 0);
  const buffer = new ArrayBuffer(44 + 2 * length);
  const view = new DataView(buffer);
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * length, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, 2 * length, true);
  let offset = 44;
  for (const chunk of chunks) {
    for (let i = 0; i < chunk.length; i++, offset += 2) {
      const s = Math.max(-1, Math.min(1, chunk[i]));
      view.setInt16(offset, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    }
  }
  return new Blob([buffer], { type: "audio/wav" });
}

function setupRecorder(root) {
  const input = document.getElementById(root.dataset.target);
  const record = root.querySelector('[data-action="record"]');
  const stop = root.querySelector('[data-action="stop"]');
  const status = root.querySelector(".recorder-status");
  const player = root.querySelector("audio");
  let session = null;

  record.addEventListener("click", async () => {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      status.textContent = "This browser cannot record here (recording needs localhost or https); upload a file.";
      return;
    }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const context = new AudioContext();
      const source = context.createMediaStreamSource(stream);
      const processor = context.createScriptProcessor(4096, 1, 1);
      const chunks = [];
      processor.onaudioprocess = (e) => chunks.push(new Float32Array(e.inputBuffer.getChannelData(0)));
      source.connect(processor);
      processor.connect(context.destination);
      session = { stream, context, source, processor, chunks, started: Date.now() };
      record.disabled = true;
      stop.disabled = false;
      root.dataset.state = "recording";
      status.textContent = "recording...";
    } catch (error) {
      status.textContent = `No microphone: ${error.message}. Upload a file instead.`;
    }
  });

  stop.addEventListener("click", async () => {
    if (!session) return;
    const { stream, context, source, processor, chunks, started } = session;
    session = null;
    source.disconnect(); processor.disconnect();
    stream.getTracks().forEach((t) => t.stop());
    const rate = context.sampleRate;
    await context.close();
    const blob = encodeWav(chunks, rate);
    const file = new File([blob], "recording.wav", { type: "audio/wav" });
    const transfer = new DataTransfer();
    transfer.items.add(file);
    input.files = transfer.files;
    player.src = URL.createObjectURL(blob);
    player.hidden = false;
    record.disabled = false;
    stop.disabled = true;
    root.dataset.state = "recorded";
    status.textContent = `recorded ${((Date.now() - started) / 1000).toFixed(1)} s; press Run to transcribe`;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll('[role="tab"]').forEach((b) =>
    b.addEventListener("click", () => { selectTab(b.dataset.tab); history.replaceState(null, "", `#${b.dataset.tab}`); }));
  if (location.hash) selectTab(location.hash.slice(1));
  document.querySelectorAll("form[data-tab]").forEach((f) => f.addEventListener("submit", submitForm));
  document.querySelectorAll(".recorder").forEach(setupRecorder);
  document.body.dataset.ready = "true";
});
