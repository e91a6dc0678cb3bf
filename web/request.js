// The request page: a photo, a style and options in; progress, then the result beside the photo.
// Speaks the service's protocol (docs/protocol.md, "The WebSocket protocol") through client.js.
//
// URL parameter for tests and demos: ?size=N (64..2048) sends options.size = N, the long side of
// the result in pixels (the preview preset's is 256), so a job on a CPU takes seconds.

import {
  ServiceClient, ServiceError, decode, inStyle, showConnection, showUnavailable, shrink, styleTitle, thumbnail,
  websocketUrl, withImages,
} from "./client.js";

const $ = (id) => document.getElementById(id);
const PRESET = "preview";
const SIZE = (() => {
  const size = Number(new URLSearchParams(location.search).get("size"));
  return Number.isInteger(size) && size >= 64 && size <= 2048 ? size : null;
})();
const SLOW_POLL = 20000;  // GET_JOB while pushes arrive on this connection: a safety net
const FAST_POLL = 3000;  // GET_JOB after a reconnect: pushes go to the connection that submitted

let photo = null;  // the File chosen and checked
let ownStyle = null;
let sending = false;
let job = JSON.parse(sessionStorage.getItem("job") || "null");  // {jobId, jobToken, style, isPrivate, before}
let jobGeneration = null;  // the connection that submitted the job: it gets the job's pushes
let pollTimer = null;
let choosing = 0;  // the latest photo chosen: an older one still being checked is dropped
const titles = new Map();  // style name → its title from LIST_STYLES ("The Starry Night")

// --- the form ---------------------------------------------------------------------------------

/** A reason from the service as the end of a sentence: "… truncated" → "… truncated." */
const sentence = (text) => (/[.!?]$/.test(text ?? "") ? text : `${text ?? "no reason was given"}.`);
const jobFailed = (reason) => `The painting failed: ${sentence(reason)} Try again, or try another photo or style.`;

function fieldError(id, text) {
  $(id).textContent = text ?? "";
  $(id).hidden = !text;
}

async function choosePhoto(file) {
  const mine = ++choosing;
  fieldError("photo-error", null);
  $("photo").removeAttribute("aria-invalid");
  if (!file) return;
  const problem = await imageProblem(file);
  if (mine !== choosing) return;
  if (problem) {
    photo = null;
    $("photo").value = "";
    $("photo").setAttribute("aria-invalid", "true");
    $("preview").hidden = true;
    $("photo-name").textContent = "";
    $("drop").dataset.state = "invalid";
    fieldError("photo-error", problem);
    return;
  }
  photo = file;
  $("preview").src = URL.createObjectURL(file);
  $("preview").hidden = false;
  $("photo-name").textContent = file.name;
  $("drop").dataset.state = "chosen";
}

/** Why a file cannot be sent as a picture, in words for people; null when it can. */
async function imageProblem(file) {
  if (file.type && !file.type.startsWith("image/")) {
    return `“${file.name}” is not an image. Choose a photo: a JPEG, PNG or WebP file.`;
  }
  if (file.size === 0) return `“${file.name}” is empty. Choose a photo: a JPEG, PNG or WebP file.`;
  try {
    (await decode(file)).close();
  } catch {
    return `“${file.name}” is not a picture this page can read: it may be damaged, or in a format your browser ` +
      "cannot open. Choose a JPEG, PNG or WebP file.";
  }
  return null;
}

$("photo").addEventListener("change", () => choosePhoto($("photo").files[0]));

// Drag and drop: onto the drop zone, which shows that it takes the file while one is over it.
// A file dropped anywhere else is ignored, rather than the browser leaving the page to open it.
let dragDepth = 0;
const hasFiles = (event) => [...(event.dataTransfer?.types ?? [])].includes("Files");
$("drop").addEventListener("dragenter", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  dragDepth += 1;
  $("drop").classList.add("dragging");
});
$("drop").addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) $("drop").classList.remove("dragging");
});
$("drop").addEventListener("dragover", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = "copy";
});
$("drop").addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  $("drop").classList.remove("dragging");
  const file = event.dataTransfer.files[0];
  if (file) choosePhoto(file);
});
for (const name of ["dragover", "drop"]) {
  window.addEventListener(name, (event) => { if (hasFiles(event)) event.preventDefault(); });
}

$("own-button").addEventListener("click", () => $("own-style").click());
$("own-style").addEventListener("change", async () => {
  const file = $("own-style").files[0];
  fieldError("own-error", null);
  if (!file) return;
  const problem = await imageProblem(file);
  if (problem) {
    $("own-style").value = "";
    fieldError("own-error", problem);
    return;
  }
  ownStyle = file;
  $("own-preview").src = URL.createObjectURL(file);
  $("own-preview").alt = "";
  $("own-tile").hidden = false;
  $("own-radio").checked = true;
  $("own-radio").focus();
  $("own-button").textContent = "Use another style image…";
});

$("strength").addEventListener("input", () => {
  $("strength-value").textContent = `${Math.round(Number($("strength").value) * 100)}%`;
});

async function loadStyles() {
  try {
    const { styles } = await client.request({ action: "LIST_STYLES" }, "STYLES");
    fieldError("styles-error", null);
    const chosen = document.querySelector("input[name=style]:checked")?.value;
    for (const tile of document.querySelectorAll(".style[data-name]")) tile.remove();
    for (const style of styles) {
      const tile = document.createElement("label");
      tile.className = "style";
      tile.dataset.name = style.name;
      const radio = Object.assign(document.createElement("input"), { type: "radio", name: "style", value: style.name });
      const image = Object.assign(document.createElement("img"), { src: style.previewUrl, alt: "", loading: "lazy" });
      const name = style.title ?? styleTitle(style.name);
      const title = Object.assign(document.createElement("span"), { className: "title", textContent: name });
      tile.title = style.artist ? `${name}, ${style.artist}${style.year ? `, ${style.year}` : ""}` : name;
      titles.set(style.name, name);
      tile.append(radio, image, title);
      if (style.artist) {
        tile.append(Object.assign(document.createElement("span"), { className: "artist", textContent: style.artist }));
      }
      $("own-tile").before(tile);
    }
    const keep = [...document.querySelectorAll("input[name=style]")].find((r) => r.value === chosen && !r.closest("[hidden]"));
    const radio = keep ?? document.querySelector("input[name=style]");
    if (radio) radio.checked = true;
    $("styles").setAttribute("aria-busy", "false");
    return true;
  } catch (error) {
    fieldError("styles-error", `The styles could not be loaded (${error.message}). You can still use your own style image.`);
    return false;
  }
}

// --- the job ----------------------------------------------------------------------------------

function view(state) {
  const panel = $("job");
  panel.dataset.state = state;  // idle, sending, running, done, failed
  $("idle").hidden = state !== "idle";
  $("progress-area").hidden = !["sending", "running"].includes(state);
  $("pair").hidden = state === "idle" || (state === "failed" && !$("before").getAttribute("src"));
  // "done": until the painting loads; and not under a preview
  $("painting").hidden = !["sending", "running", "done"].includes(state) || !$("sketch").hidden;
  if (state === "sending") $("after-caption").textContent = "After";
  $("submit").disabled = ["sending", "running"].includes(state);
  $("submit").textContent = state === "sending" ? "Sending…" : state === "running" ? "Painting…" : "Repaint my photo";
  if (state !== "failed") fieldError("job-error", null);
  if (state !== "done") {
    $("after").hidden = true;
    $("download").hidden = $("see-feed").hidden = true;
  }
  if (!["running", "done"].includes(state)) showSketch(null);
}

/** The instant preview or a thumbnail of the painting so far, in the painting's place and marked
 * as such; null takes it away. A newer picture replaces an older one only once it has loaded. */
function showSketch(src, label = "Preview") {
  const sketch = $("sketch");
  if (!src) {
    sketch.hidden = $("sketch-badge").hidden = true;
    sketch.onload = null;
    sketch.removeAttribute("src");
    delete $("job").dataset.sketch;
    return;
  }
  sketch.onload = () => {
    if (!$("after").hidden) return;  // the painting came first
    sketch.hidden = $("sketch-badge").hidden = false;
    $("painting").hidden = true;
  };
  $("sketch-badge").textContent = label;
  $("after-caption").textContent = label === "Preview" ? "A quick preview: your painting is on its way" : "The painting so far";
  $("job").dataset.sketch = label === "Preview" ? "preview" : "painting";
  sketch.src = src;
}

function message(text, progress) {
  $("message").textContent = text;
  if (progress === undefined) $("progress").removeAttribute("value");  // indeterminate
  else $("progress").value = progress;
}

function showProgress(progress, iteration, total) {
  const percent = Math.round(progress * 100);
  message(progress > 0 ? `Painting… ${percent}%${total ? ` (step ${iteration} of ${total})` : ""}` : "Waiting for a painter…",
    progress > 0 ? progress : undefined);
}

$("before").addEventListener("load", () => {  // the painting's placeholder takes the photo's shape
  const { naturalWidth: width, naturalHeight: height } = $("before");
  if (width && height) $("pair").style.setProperty("--ratio", `${width} / ${height}`);
});

function showBefore(src) {
  if (src) $("before").src = src;
  else $("before").removeAttribute("src");
}

function remember(value) {
  job = value;
  if (value) sessionStorage.setItem("job", JSON.stringify(value));
  else sessionStorage.removeItem("job");
  clearTimeout(pollTimer);
  pollTimer = null;
  if (value) schedulePoll();
}

function schedulePoll() {
  clearTimeout(pollTimer);
  if (!job) return;
  pollTimer = setTimeout(checkJob, client.generation === jobGeneration ? SLOW_POLL : FAST_POLL);
}

function finish(url) {
  const style = job?.style;
  const name = job?.styleName;
  const shared = job && !job.isPrivate;
  remember(null);
  view("done");
  message("Done!", 1);
  $("after").alt = style ? `Your photo, repainted in ${inStyle(style)}` : "Your photo, repainted";
  $("after-caption").textContent = style ? `After: ${style}` : "After";
  $("after").onload = () => { $("after").hidden = false; $("painting").hidden = true; showSketch(null); };
  $("after").onerror = () => fail("The painting is ready, but this page could not show it. Use the download link to open it.");
  $("after").src = url;
  $("download").href = url;
  $("download").download = `repainted${name ? `-${name}` : ""}.jpg`;
  $("download").hidden = false;
  $("see-feed").hidden = !shared;
}

function fail(text) {
  remember(null);
  view("failed");
  fieldError("job-error", text);
  if (text.startsWith("The painting is ready")) $("download").hidden = false;
}

let checking = false;  // one GET_JOB at a time

async function checkJob() {
  if (!job || checking) return;
  const asked = job;
  checking = true;
  try {
    const state = await client.request(
      { action: "GET_JOB", jobId: asked.jobId, jobToken: asked.jobToken }, "JOB", (data) => data?.jobId === asked.jobId);
    if (job !== asked) return;
    if (state.status === "SUCCEEDED") finish(state.result);
    else if (state.status === "FAILED") fail(jobFailed(state.error));
    else {
      view("running");
      showProgress(state.progress ?? 0);
      if (state.preview && !$("job").dataset.sketch) showSketch(state.preview);
      schedulePoll();
    }
  } catch (error) {
    if (job !== asked) return;
    if (error instanceof ServiceError) {
      fail("This job can no longer be found (it may have expired). Please send your photo again.");
    } else {
      schedulePoll();  // no connection now: the reconnect asks again
    }
  } finally {
    checking = false;
  }
}

$("request").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (sending || job) return;
  if (!photo) {
    if ($("photo-error").hidden) fieldError("photo-error", "Choose a photo first.");
    $("photo").focus();
    $("drop").scrollIntoView({ block: "center", behavior: "smooth" });
    return;
  }
  const choice = document.querySelector("input[name=style]:checked")?.value;
  if (!choice || (choice === "own" && !ownStyle)) {
    fieldError("styles-error", "Pick a style, or use your own style image.");
    return;
  }
  fieldError("styles-error", null);
  sending = true;
  showBefore(URL.createObjectURL(photo));
  view("sending");
  message("Preparing your photo…");
  if (matchMedia("(max-width: 56rem)").matches) $("job").scrollIntoView({ behavior: "smooth" });
  try {
    const image = await shrink(photo);
    const before = await thumbnail(image).catch(() => null);  // shown again after a reload
    message("Uploading your photo…");
    const isPrivate = $("private").checked;
    const options = { preset: PRESET, strength: Number($("strength").value), preserveColors: $("colors").checked };
    if (SIZE) options.size = SIZE;
    // the photo inline while the whole message fits in one frame, else uploaded; an own style is
    // always uploaded (the protocol takes a style only as a catalogue name or an upload's key)
    const images = choice === "own" ? { image, style: await shrink(ownStyle, 1024) } : { image };
    const request = await withImages(client, images,
      (fields) => ({ action: "TRANSFER_STYLE", style: choice, ...fields, isPrivate, options }), { uploadOnly: ["style"] });
    message("Sending…");
    const accepted = await client.request(request, "TRANSFER_STYLE_ACCEPTED");
    jobGeneration = client.generation;
    const named = choice === "own" ? null : choice;
    remember({ ...accepted, style: named && (titles.get(named) ?? styleTitle(named)), styleName: named, isPrivate, before });
    $("job").dataset.jobId = accepted.jobId;
    view("running");
    showProgress(0);
  } catch (error) {
    view("failed");
    if (error instanceof ServiceError) {
      fieldError("job-error", `The service did not accept this: ${sentence(error.message)}`);
    } else if (/connection/.test(error.message)) {
      fieldError("job-error", "The connection to the service was lost while sending your photo. Check your " +
        "network, then press “Repaint my photo” again.");
    } else {
      fieldError("job-error", `Your photo could not be sent: ${sentence(error.message)}`);
    }
  } finally {
    sending = false;
  }
});

// --- the connection ---------------------------------------------------------------------------

let client;
try {
  client = new ServiceClient(await websocketUrl());
} catch (error) {
  showUnavailable($("status"));
  fieldError("job-error", `This page cannot reach the service: ${error.message}.`);
  $("job").dataset.state = "failed";
  $("submit").disabled = true;
  throw error;
}
showConnection(client, $("status"), $("offline"));
client.addEventListener("push", ({ detail: { event, data } }) => {
  if (!job || !event.endsWith(`::${job.jobId}`)) return;
  schedulePoll();
  if (event.startsWith("TRANSFER_STYLE_PREVIEW::")) {
    if ($("job").dataset.sketch !== "painting") showSketch(data.preview);  // a thumbnail is newer
  } else if (event.startsWith("TRANSFER_STYLE_PROGRESS::")) {
    view("running");
    showProgress(data.progress, data.iteration, data.total);
    if (data.thumbnail) showSketch(data.thumbnail, `Painting… ${Math.round(data.progress * 100)}%`);
  }
  else if (event.startsWith("TRANSFER_STYLE_COMPLETED::")) finish(data.result);
  else if (event.startsWith("TRANSFER_STYLE_FAILED::")) fail(jobFailed(data.error));
});
let stylesLoaded = false;
client.addEventListener("status", async () => {
  if (client.status === "reconnecting" && job) {
    message("The connection was lost. Your job keeps running; reconnecting to get its result…");
  }
  if (client.status !== "connected") return;
  // a new connection gets no pushes for a job sent on an earlier one: ask for it
  if (job) checkJob();
  if (!stylesLoaded) stylesLoaded = await loadStyles();
});
if (job) {  // sent before a reload
  $("job").dataset.jobId = job.jobId;
  showBefore(job.before);
  view("running");
  message("Looking for your painting…");
}
client.connect();
