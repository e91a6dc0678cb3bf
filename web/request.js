// The request page: a photo, a style (or two blended) and options in; progress, then the result
// beside the photo; and "Your paintings", the jobs this browser sent. Speaks the service's
// protocol (docs/protocol.md) through client.js; what the page offers comes from the service:
// the sizes and the pace of its device (GET_SERVICE), the catalogue (LIST_STYLES), and the photo in
// every style before anything is sent (PREVIEW_STYLES).
//
// URL parameter for tests and demos: ?size=N (64..2048) sends options.size = N, the long side of
// the result in pixels, in place of a size the service offers, so a job on a CPU takes seconds.

import {
  ServiceClient, ServiceError, decode, imageSize, inStyle, ownOrTitle, paintingName, paintingUrl, shareLink,
  showConnection, showUnavailable, shrink, smallJpeg, styleTitle, thumbnail, upload, websocketUrl, withImages,
} from "./client.js";
import { Countdown, deviceWords, estimate, inWords, offerAt, work } from "./estimate.js";
import * as mine from "./mine.js";

const $ = (id) => document.getElementById(id);
const SIZE = (() => {
  const size = Number(new URLSearchParams(location.search).get("size"));
  return Number.isInteger(size) && size >= 64 && size <= 2048 ? size : null;
})();
const SLOW_POLL = 20000;  // GET_JOB while pushes arrive on this connection: a safety net
const FAST_POLL = 3000;  // GET_JOB after a reconnect: pushes go to the connection that submitted
const RERENDER_MS = 350;  // the chosen style's preview follows the strength slider and colour switch
const ASSUMED = [4, 3];  // a photo's shape for estimates before one is chosen

let photo = null;  // the File chosen and checked
let photoSize = null;  // [width, height] as the service will see it
let ownStyle = null;
let ownKey = null;  // the own style image's upload, once made (for its preview, and the job)
let sending = false;
let job = JSON.parse(sessionStorage.getItem("job") || "null");  // the running job (see remember)
let shown = null;  // the entry of "Your paintings" shown in the result panel, once done
let jobGeneration = null;  // the connection that submitted the job: it gets the job's pushes
let pollTimer = null;
let choosing = 0;  // the latest photo chosen: an older one still being checked is dropped
let service = null;  // GET_SERVICE's answer
let countdown = null;
const titles = new Map();  // style name → its title from LIST_STYLES ("The Starry Night")
const titleOf = (name) => titles.get(name) ?? ownOrTitle(name);

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
    photo = photoSize = null;
    $("photo").value = "";
    $("photo").setAttribute("aria-invalid", "true");
    $("preview").hidden = true;
    $("photo-name").textContent = "";
    $("drop").dataset.state = "invalid";
    fieldError("photo-error", problem);
    forgetPreviews();
    showEstimate();
    return;
  }
  photo = file;
  photoSize = await imageSize(file).catch(() => null);
  $("preview").src = URL.createObjectURL(file);
  $("preview").hidden = false;
  $("photo-name").textContent = file.name;
  $("drop").dataset.state = "chosen";
  showEstimate();
  previewAll();
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
  ownKey = null;
  $("own-preview").src = URL.createObjectURL(file);
  $("own-preview").alt = "";
  setShown($("own-tile"), null);
  $("own-tile").hidden = false;
  $("own-radio").checked = true;
  $("own-radio").focus();
  $("own-button").textContent = "Use another style image…";
  fillSecond();
  styleChanged();
});

/** The own style image, uploaded once (its preview and its job use the same key); null if the
 * upload cannot be made now. */
let ownUploading = null;  // {file, promise}: one upload per image, however many ask for it at once
async function ownUpload() {
  if (!ownStyle) return null;
  if (ownKey) return ownKey;
  if (ownUploading?.file !== ownStyle) {
    const file = ownStyle;
    const promise = shrink(file, 1024).then((blob) => upload(client, blob));
    ownUploading = { file, promise };
    promise.then((key) => { if (file === ownStyle) ownKey = key; },
      () => { if (ownUploading?.promise === promise) ownUploading = null; });  // the next asks again
  }
  return ownUploading.promise;
}

$("strength").addEventListener("input", () => {
  $("strength-value").textContent = `${Math.round(Number($("strength").value) * 100)}%`;
  rerenderSoon();
});
$("colors").addEventListener("change", rerenderSoon);

/** The style chosen: a catalogue name, or "own". */
const chosen = () => document.querySelector("input[name=style]:checked")?.value ?? null;

async function loadStyles() {
  try {
    const { styles } = await client.request({ action: "LIST_STYLES" }, "STYLES");
    fieldError("styles-error", null);
    const before = chosen();
    for (const tile of document.querySelectorAll(".style[data-name]")) tile.remove();
    for (const style of styles) {
      const tile = document.createElement("label");
      tile.className = "style";
      tile.dataset.name = style.name;
      const radio = Object.assign(document.createElement("input"), { type: "radio", name: "style", value: style.name });
      const art = Object.assign(document.createElement("img"), { src: style.previewUrl, alt: "", loading: "lazy", className: "art" });
      const onPhoto = Object.assign(document.createElement("img"), { alt: "", className: "shown", hidden: true });
      const frame = Object.assign(document.createElement("span"), { className: "tile-art" });
      frame.append(art, onPhoto);
      const name = style.title ?? styleTitle(style.name);
      const title = Object.assign(document.createElement("span"), { className: "title", textContent: name });
      tile.title = style.artist ? `${name}, ${style.artist}${style.year ? `, ${style.year}` : ""}` : name;
      titles.set(style.name, name);
      tile.append(radio, frame, title);
      if (style.artist) {
        tile.append(Object.assign(document.createElement("span"), { className: "artist", textContent: style.artist }));
      }
      $("own-tile").before(tile);
    }
    const keep = [...document.querySelectorAll("input[name=style]")].find((r) => r.value === before && !r.closest("[hidden]"));
    const radio = keep ?? document.querySelector("input[name=style]");
    if (radio) radio.checked = true;
    $("styles").setAttribute("aria-busy", "false");
    fillSecond();
    showMix();
    if (photo) previewAll();
    return true;
  } catch (error) {
    fieldError("styles-error", `The styles could not be loaded (${error.message}). You can still use your own style image.`);
    return false;
  }
}

$("styles").addEventListener("change", (event) => {
  if (event.target.name === "style") styleChanged();
});

function styleChanged() {
  fieldError("styles-error", null);
  if (chosen() === $("second").value) fillSecond();
  showMix();
  rerender({ blendOnly: false, onlyIfStale: true });
}

// --- the photo in every style (PREVIEW_STYLES) ---------------------------------------------------

let source = null;  // {for: the photo File, url: its small JPEG data URL}
let requests = 0;
const latest = new Map();  // style name (or "blend") → the requestId whose preview it waits for
const settingsOf = new Map();  // style name → the strength and colour switch its preview shows

const settingsNow = () => `${Number($("strength").value)}|${$("colors").checked}`;
const tileOf = (name) => (name === "own" ? $("own-tile")
  : [...document.querySelectorAll(".style[data-name]")].find((tile) => tile.dataset.name === name));

function setShown(tile, url) {
  const shownImage = tile?.querySelector(".shown");
  if (!shownImage) return;
  if (!url) {
    shownImage.hidden = true;
    shownImage.removeAttribute("src");
    delete tile.dataset.preview;
    return;
  }
  shownImage.onload = () => { shownImage.hidden = false; tile.dataset.preview = "ready"; };
  shownImage.src = url;
}

function forgetPreviews() {
  source = null;
  latest.clear();
  settingsOf.clear();
  for (const tile of document.querySelectorAll(".style")) {
    setShown(tile, null);
    delete tile.dataset.previewing;
  }
  $("blend-preview").hidden = true;
  $("styles-hint").textContent = "Choose a photo to see it in every style.";
}

/** The photo as PREVIEW_STYLES takes it: a small JPEG, made once per photo. */
async function previewSource() {
  if (!photo) return null;
  if (source?.for !== photo) source = { for: photo, url: await smallJpeg(photo) };
  return source.url;
}

/** One PREVIEW_STYLES; `names` the tiles it paints (null: the whole catalogue), or a blend. */
async function askPreviews({ names = null, blend = null } = {}) {
  const image = await previewSource().catch(() => null);
  if (!image || !client) return;
  const requestId = `p${++requests}`;
  const body = { action: "PREVIEW_STYLES", image, requestId, strength: Number($("strength").value),
    preserveColors: $("colors").checked };
  if (blend) {
    body.styles = blend.styles;
    body.styleBlend = blend.weights;
    latest.set("blend", requestId);
  } else {
    const catalogue = [...document.querySelectorAll(".style[data-name]")].map((tile) => tile.dataset.name);
    for (const name of names ?? catalogue) {
      latest.set(name, requestId);
      settingsOf.set(name, settingsNow());
      tileOf(name)?.setAttribute("data-previewing", "");
    }
    if (names) body.styles = names.map((name) => (name === "own" ? ownKey : name));
  }
  try {
    const done = await client.request(body, "STYLE_PREVIEWS_DONE", (data) => data?.requestId === requestId);
    if (!names && !blend) {
      $("styles-hint").textContent = done.count ? "Your photo in every style: pick the one you like." : "";
    }
  } catch (error) {
    if (error instanceof ServiceError) $("styles-hint").textContent = `No previews just now: ${sentence(error.message)}`;
  } finally {
    for (const tile of document.querySelectorAll(".style[data-previewing]")) {
      if (latest.get(tile.dataset.name ?? "own") === requestId) delete tile.dataset.previewing;
    }
  }
}

function previewAll() {
  latest.clear();
  $("styles-hint").textContent = "Painting your photo in every style…";
  askPreviews();
  if (ownStyle) rerender({ names: ["own"] });
  if (blendOn()) rerender({ blendOnly: true });
}

let rerenderTimer = null;
function rerenderSoon() {
  clearTimeout(rerenderTimer);
  rerenderTimer = setTimeout(() => rerender({}), RERENDER_MS);
}

/** The chosen style (and the second, and the blend) painted again with the settings of now;
 * `onlyIfStale`: only those whose preview shows other settings. */
async function rerender({ names = null, blendOnly = false, onlyIfStale = false }) {
  if (!photo) return;
  if (!blendOnly) {
    const wanted = (names ?? [chosen(), blendOn() ? $("second").value : null])
      .filter((name) => name && (!onlyIfStale || settingsOf.get(name) !== settingsNow()));
    const own = wanted.includes("own");
    if (own && !(await ownUpload().catch(() => null))) wanted.splice(wanted.indexOf("own"), 1);
    if (wanted.length) askPreviews({ names: wanted });
  }
  if (blendOn()) {
    const styles = await blendStyles().catch(() => null);
    if (styles) askPreviews({ blend: { styles, weights: weights() } });
  }
}

// --- a second painting, blended ---------------------------------------------------------------

const blendOn = () => !$("blend").hidden;
const weights = () => {
  const first = Math.round(Number($("mix").value) * 100) / 100;
  return [first, Math.round((1 - first) * 100) / 100];
};

/** The second painting's choices: every style but the first (the own image too, if there is one). */
function fillSecond() {
  const select = $("second");
  const before = select.value;
  select.replaceChildren();
  const names = [...document.querySelectorAll(".style[data-name]")].map((tile) => tile.dataset.name);
  if (ownStyle) names.push("own");
  for (const name of names.filter((n) => n !== chosen())) {
    select.append(Object.assign(document.createElement("option"), { value: name, textContent: name === "own" ? "Your own style image" : titleOf(name) }));
  }
  if ([...select.options].some((option) => option.value === before)) select.value = before;
}

function showMix() {
  const [first, second] = weights();
  const firstName = chosen() === "own" ? "your own style" : titleOf(chosen() ?? "");
  const secondName = $("second").value === "own" ? "your own style" : titleOf($("second").value || "");
  $("mix-first").textContent = firstName;
  $("mix-second").textContent = secondName;
  $("mix-value").textContent = `${Math.round(first * 100)}% ${firstName} · ${Math.round(second * 100)}% ${secondName}`;
  $("blend-preview").alt = `Your photo in a blend of ${firstName} and ${secondName}`;
  for (const tile of document.querySelectorAll(".style")) delete tile.dataset.second;
  if (blendOn()) tileOf($("second").value)?.setAttribute("data-second", "");
}

/** The blend's two styles as the protocol takes them (the own image as its upload's key). */
async function blendStyles() {
  const styles = [chosen(), $("second").value];
  if (styles.includes("own") && !(await ownUpload())) return null;
  return styles.map((name) => (name === "own" ? ownKey : name));
}

$("blend-add").addEventListener("click", () => {
  fillSecond();
  $("blend").hidden = false;
  $("blend-add").hidden = true;
  showMix();
  $("second").focus();
  rerender({ names: [$("second").value], onlyIfStale: true });
  rerender({ blendOnly: true });
});
$("blend-remove").addEventListener("click", () => {
  $("blend").hidden = true;
  $("blend-add").hidden = false;
  showMix();
  $("blend-add").focus();
});
$("second").addEventListener("change", () => {
  showMix();
  rerender({ names: [$("second").value], onlyIfStale: true });
  rerender({ blendOnly: true });
});
$("mix").addEventListener("input", () => {
  showMix();
  clearTimeout(rerenderTimer);
  rerenderTimer = setTimeout(() => rerender({ blendOnly: true }), RERENDER_MS);
});

// --- sizes and the time they take (GET_SERVICE) ------------------------------------------------

/** The offer chosen: one of the service's sizes, or that of ?size=N. */
function offer() {
  if (!service) return null;
  const value = Number(document.querySelector("input[name=size]:checked")?.value);
  const found = service.sizes.find((o) => o.size === value);
  if (found) return found;
  const base = service.sizes.find((o) => o.size === service.defaultSize) ?? service.sizes[0];
  return SIZE ? offerAt(base, SIZE) : base;
}

async function loadService() {
  try {
    service = await client.request({ action: "GET_SERVICE" }, "SERVICE");
  } catch {
    $("sizes-loading").textContent = "The sizes could not be loaded; the service's usual size is used.";
    return false;
  }
  const before = Number(document.querySelector("input[name=size]:checked")?.value);
  for (const old of document.querySelectorAll("#sizes .choice")) old.remove();
  const offers = [...service.sizes];
  if (SIZE && !offers.some((o) => o.size === SIZE)) offers.unshift(offerAt(offers[0], SIZE));
  for (const each of offers) {
    const radio = Object.assign(document.createElement("input"), { type: "radio", name: "size", value: String(each.size) });
    radio.checked = each.size === (before || SIZE || service.defaultSize);
    const label = document.createElement("label");
    label.className = "choice size-choice";
    const words = Object.assign(document.createElement("span"), { className: "size-time hint" });
    words.dataset.size = String(each.size);
    const name = document.createElement("strong");
    name.textContent = `${each.size} px${each.size === service.defaultSize ? " · quick" : ""}`;
    label.append(radio, name, words);
    $("sizes").append(label);
  }
  $("sizes-loading").hidden = true;
  $("sizes").dataset.device = service.device;
  showEstimate();
  return true;
}

$("sizes").addEventListener("change", showEstimate);

/** The time each size takes for this photo (or a 4:3 one), and the chosen one's in full. */
function showEstimate() {
  const note = $("estimate");
  if (!service) return;
  const [width, height] = photoSize ?? ASSUMED;
  const device = deviceWords(service.device);
  for (const words of document.querySelectorAll(".size-time")) {
    const sized = offerAt(offer() ?? service.sizes[0], Number(words.dataset.size));
    const each = service.sizes.find((o) => o.size === sized.size) ?? sized;
    const { painting } = estimate(service, each, width, height);
    words.textContent = painting === null ? "" : inWords(painting);
  }
  const chosenOffer = offer();
  const { painting, start, measuredAt } = estimate(service, chosenOffer, width, height);
  const shape = photoSize ? "" : " (for a 4:3 photo)";
  $("service-note").textContent = service.deviceMeasured
    ? `The service paints on a ${device}.`
    : `The service paints on a ${device} (none has painted yet).`;
  if (painting === null) {
    note.textContent = `No painting has been timed on this service yet: the first one sets the estimate. Sizes offered on a ${device}.`;
    delete note.dataset.seconds;
    return;
  }
  const total = painting + (start ?? 0);
  note.dataset.seconds = total.toFixed(1);
  const measured = measuredAt ? `, at the pace its ${device} measured ${agoWords(measuredAt)}` : "";
  const starting = start ? `, plus ${inWords(start)} to start a painter (none is running now)` : "";
  note.textContent = `${chosenOffer.size} px${shape}: ${inWords(painting)} of painting${measured}${starting}.`;
}

const agoWords = (ms) => {
  const minutes = Math.round((Date.now() - ms) / 60000);
  return minutes < 1 ? "just now" : minutes < 120 ? `${minutes} min ago` : `${Math.round(minutes / 60)} h ago`;
};

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
    $("download").hidden = $("see-feed").hidden = $("share").hidden = $("permalink").hidden = true;
  }
  $("delete").hidden = !(["running", "done"].includes(state) && (job || shown));
  $("confirm-delete").hidden = true;
  $("share-note").hidden = $("share-url").hidden = true;
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

let shownProgress = { progress: 0 };  // the latest progress shown: the countdown redraws it

function showProgress(progress, iteration, total) {
  if (iteration !== undefined) countdown?.progress(iteration);
  shownProgress = { progress, iteration, total };
  drawProgress();
}

/** The progress bar and its words, with the time left as the countdown has it now. */
function drawProgress() {
  const { progress, iteration, total } = shownProgress;
  const left = countdown?.left() ?? null;
  const time = left === null ? "" : ` · ${inWords(left)} left`;
  const step = total ? ` (step ${iteration} of ${total})` : "";
  message(progress > 0 ? `Painting… ${Math.round(progress * 100)}%${step}${time}` : `Waiting for a painter…${time}`,
    progress > 0 ? progress : undefined);
  $("progress-area").dataset.left = left === null ? "" : left.toFixed(1);
}

setInterval(() => {  // the time left counts down between progress messages
  // (not while the connection is down: the page says so in the same place)
  if ($("job").dataset.state === "running" && countdown?.latest && client?.status === "connected") drawProgress();
}, 1000);

$("before").addEventListener("load", () => {  // the painting's placeholder takes the photo's shape
  const { naturalWidth: width, naturalHeight: height } = $("before");
  if (width && height) $("pair").style.setProperty("--ratio", `${width} / ${height}`);
});

function showBefore(src) {
  if (src) $("before").src = src;
  else $("before").removeAttribute("src");
}

/** The running job, kept for a reload (sessionStorage): {jobId, jobToken, style, styleName, blend,
 * isPrivate, before, offer, size}. */
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

/** The painting, done, beside its photo; `entry` its place in "Your paintings". */
function finish(url, entry = mine.find(job?.jobId)) {
  const ran = job;
  remember(null);
  countdown = null;
  shown = entry;
  view("done");
  message("Done!", 1);
  const name = entry ? entry.style : "";
  const what = entry?.blend ? `a blend of ${name}` : entry?.styleName ? inStyle(name) : "your own style image";
  $("after").alt = name ? `Your photo, repainted in ${what}` : "Your photo, repainted";
  $("after-caption").textContent = name ? `After: ${name}` : "After";
  $("after").onload = () => {
    $("after").hidden = false;
    $("painting").hidden = true;
    showSketch(null);
    if (entry && ran) keepThumbnail(entry.jobId);
  };
  $("after").onerror = () => fail("The painting is ready, but this page could not show it. Use the download link to open it.");
  $("after").src = url;
  $("download").href = url;
  $("download").download = `repainted${entry?.styleName ? `-${entry.styleName}` : ""}.jpg`;
  $("download").hidden = false;
  const shared = entry && !entry.isPrivate;
  $("see-feed").hidden = $("share").hidden = $("permalink").hidden = !shared;
  if (shared) $("permalink").href = paintingUrl(entry.jobId);
  $("delete").hidden = !entry;
  if (entry) mine.update(entry.jobId, { done: true });
  showMine();
  if (ran) loadService();  // the worker measured its pace on this very job: estimates follow it
}

/** The painting's thumbnail for "Your paintings": the painting itself when the page may read its
 * pixels (a public one is served from this page's own origin), else the last picture of it the
 * page was sent (the painting so far, or the instant preview), else the photo. */
async function keepThumbnail(jobId) {
  const sameOrigin = new URL($("after").src, location.href).origin === location.origin;
  const candidates = [sameOrigin ? $("after") : null, $("sketch").dataset.kept ? $("sketch") : null];
  for (const image of candidates.filter(Boolean)) {
    try {
      mine.update(jobId, { thumbnail: await thumbnail(image, 160, 0.75) });
      showMine();
      return;
    } catch {
      // a picture the page may not read: the next one
    }
  }
}

function fail(text) {
  remember(null);
  countdown = null;
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
      fail("This job can no longer be found (it may have expired or been deleted). Please send your photo again.");
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
  const first = chosen();
  const second = blendOn() ? $("second").value : null;
  if (!first || ([first, second].includes("own") && !ownStyle)) {
    fieldError("styles-error", "Pick a style, or use your own style image.");
    return;
  }
  fieldError("styles-error", null);
  sending = true;
  shown = null;
  showBefore(URL.createObjectURL(photo));
  view("sending");
  message("Preparing your photo…");
  if (matchMedia("(max-width: 56rem)").matches) $("job").scrollIntoView({ behavior: "smooth" });
  try {
    const image = await shrink(photo);
    const before = await thumbnail(image).catch(() => null);  // shown again after a reload
    const small = await thumbnail(image, 160, 0.75).catch(() => null);  // "Your paintings" until it is painted
    message("Uploading your photo…");
    const isPrivate = $("private").checked;
    const chosenOffer = offer();
    const options = { strength: Number($("strength").value), preserveColors: $("colors").checked };
    if (chosenOffer) Object.assign(options, { preset: chosenOffer.preset, size: chosenOffer.size });
    else if (SIZE) options.size = SIZE;  // the service's sizes are unknown: its own preset, at this size
    const names = second ? [first, second] : [first];
    if (second) options.styleBlend = weights();
    const keys = names.includes("own") ? await ownUpload() : null;
    const style = names.map((name) => (name === "own" ? keys : name));
    const request = await withImages(client, { image },
      (fields) => ({ action: "TRANSFER_STYLE", style: second ? style : style[0], ...fields, isPrivate, options }));
    message("Sending…");
    const accepted = await client.request(request, "TRANSFER_STYLE_ACCEPTED");
    jobGeneration = client.generation;
    const styleName = names[0] === "own" ? null : names[0];
    const blend = second ? names.map((name, n) => ({ style: name === "own" ? "custom" : name, weight: options.styleBlend[n] })) : null;
    const described = paintingName(names[0] === "own" ? "custom" : names[0], blend, titleOf).replace(/^Own style$/, "Your own style");
    const [width, height] = photoSize ?? ASSUMED;
    remember({ ...accepted, style: described, styleName, blend, isPrivate, before, offer: chosenOffer, size: [width, height] });
    mine.keep({ jobId: accepted.jobId, jobToken: accepted.jobToken, style: described, styleName, blend, isPrivate,
      createdAt: Date.now(), thumbnail: small, done: false });
    showMine();
    startCountdown();
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

/** The running job's countdown: the service's pace until the job's own progress tells better. */
function startCountdown() {
  countdown = null;
  if (!job?.offer || !service) return;
  const [width, height] = job.size ?? ASSUMED;
  countdown = new Countdown(job.offer, width, height, service.pace?.secondsPerMegapixelIteration);
  if (countdown.pace) {
    const { start } = estimate(service, job.offer, width, height);
    countdown.latest = { at: performance.now(), left: work(job.offer, width, height) * countdown.pace + (start ?? 0) };
  }
}

// --- share and delete -------------------------------------------------------------------------

/** The entry the result panel is about: the running job's, or the one opened. */
const current = () => (job ? mine.find(job.jobId) ?? { ...job } : shown);

async function share(entry) {
  const url = paintingUrl(entry.jobId);
  const outcome = await shareLink(url, `${entry.style}: a photo repainted`);
  const note = $("share-note");
  note.hidden = outcome === "cancelled";
  note.textContent = outcome === "shared" ? "Shared." : outcome === "copied" ? "The link is copied: paste it anywhere."
    : "Copy the link below to share it.";
  $("share-url").hidden = outcome !== "failed";
  if (outcome === "failed") {
    $("share-url").value = url;
    $("share-url").select();
  }
}

$("share").addEventListener("click", () => { const entry = current(); if (entry) share(entry); });
$("share-url").addEventListener("focus", () => $("share-url").select());

$("delete").addEventListener("click", () => {
  const entry = current();
  if (!entry) return;
  $("confirm-text").textContent = entry.isPrivate
    ? "Delete this painting and your photo from the service? This cannot be undone."
    : "Delete this painting and your photo from the service and the Feed? This cannot be undone.";
  $("confirm-delete").hidden = false;
  $("delete-no").focus();
});
$("delete-no").addEventListener("click", () => { $("confirm-delete").hidden = true; $("delete").focus(); });
$("delete-yes").addEventListener("click", async () => {
  const entry = current();
  $("confirm-delete").hidden = true;
  if (!entry) return;
  const outcome = await takeBack(entry);
  if (outcome === true) {
    if (job?.jobId === entry.jobId) remember(null);
    countdown = null;
    shown = null;
    showBefore(null);
    view("idle");
  } else {
    fieldError("job-error", outcome);
  }
});

/** DELETE_JOB; true when the job is gone (or was already), else what went wrong in words. */
async function takeBack(entry) {
  try {
    await client.request({ action: "DELETE_JOB", jobId: entry.jobId, jobToken: entry.jobToken }, "JOB_DELETED",
      (data) => data?.jobId === entry.jobId);
  } catch (error) {
    if (!(error instanceof ServiceError)) return `It could not be deleted just now (${error.message}).`;
    if (!/no job with that/.test(error.message)) return `It could not be deleted: ${sentence(error.message)}`;
    // already gone (expired, or deleted from another tab): nothing left to delete
  }
  mine.forget(entry.jobId);
  showMine();
  return true;
}

// --- "Your paintings" -------------------------------------------------------------------------

function element(tag, properties = {}, ...children) {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children);
  return node;
}

function showMine() {
  const entries = mine.paintings();
  $("mine").hidden = entries.length === 0;
  const list = $("mine-list");
  list.replaceChildren(...entries.map((entry) => {
    const when = new Date(entry.createdAt);
    const picture = entry.thumbnail
      ? element("img", { src: entry.thumbnail, alt: "", className: "mine-thumb" })
      : element("span", { className: "mine-thumb empty" });
    const open = element("button", { type: "button", className: "mine-open" }, picture,
      element("span", { className: "mine-words" },
        element("span", { className: "mine-title", textContent: entry.style }),
        element("span", { className: "hint", textContent: `${entry.isPrivate ? "Private" : "Public"} · ${when.toLocaleDateString(undefined, { day: "numeric", month: "short" })} ${when.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })}${entry.done ? "" : " · painting"}` })));
    open.setAttribute("aria-label", `Open ${entry.style}, ${entry.isPrivate ? "private" : "public"}`);
    open.addEventListener("click", () => openEntry(entry.jobId));
    const item = element("li", {}, open);
    item.dataset.jobId = entry.jobId;
    if (shown?.jobId === entry.jobId || job?.jobId === entry.jobId) item.classList.add("current");
    return item;
  }));
}

/** Opens one of "Your paintings" in the result panel through GET_JOB (a private one's links are
 * made afresh). A job still painting becomes the job the page follows. */
async function openEntry(jobId) {
  const entry = mine.find(jobId);
  if (!entry || sending) return;
  if (job && job.jobId !== jobId) {
    fieldError("job-error", "A painting is being made: open this one when it is done.");
    return;
  }
  let state;
  try {
    state = await client.request({ action: "GET_JOB", jobId, jobToken: entry.jobToken }, "JOB", (d) => d?.jobId === jobId);
  } catch (error) {
    view("failed");
    if (error instanceof ServiceError) {
      fieldError("job-error", `“${entry.style}” is no longer kept by the service${entry.isPrivate ? " (private paintings are kept a few days)" : ""}: it is taken off your list.`);
      mine.forget(jobId);
      showMine();
    } else {
      fieldError("job-error", `It could not be opened just now (${error.message}).`);
    }
    return;
  }
  $("job").dataset.jobId = jobId;
  showBefore(state.input);
  if (matchMedia("(max-width: 56rem)").matches) $("job").scrollIntoView({ behavior: "smooth" });
  if (state.status === "SUCCEEDED") {
    finish(state.result, entry);
  } else if (state.status === "FAILED") {
    shown = entry;
    view("failed");
    fieldError("job-error", jobFailed(state.error));
  } else {
    remember({ jobId, jobToken: entry.jobToken, style: entry.style, styleName: entry.styleName, blend: entry.blend,
      isPrivate: entry.isPrivate, before: state.input });
    view("running");
    showProgress(state.progress ?? 0);
    if (state.preview) showSketch(state.preview);
  }
  showMine();
}

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
  if (event === "STYLE_PREVIEW") {
    onStylePreview(data);
    return;
  }
  if (!job || !event.endsWith(`::${job.jobId}`)) return;
  schedulePoll();
  if (event.startsWith("TRANSFER_STYLE_PREVIEW::")) {
    if ($("job").dataset.sketch !== "painting") showSketch(data.preview);  // a thumbnail is newer
  } else if (event.startsWith("TRANSFER_STYLE_PROGRESS::")) {
    view("running");
    showProgress(data.progress, data.iteration, data.total);
    if (data.thumbnail) {
      showSketch(data.thumbnail, `Painting… ${Math.round(data.progress * 100)}%`);
      $("sketch").dataset.kept = "1";  // a data: URL: its pixels can make the list's thumbnail
    }
  }
  else if (event.startsWith("TRANSFER_STYLE_COMPLETED::")) finish(data.result);
  else if (event.startsWith("TRANSFER_STYLE_FAILED::")) fail(jobFailed(data.error));
});

/** A STYLE_PREVIEW: shown on its tile (or as the blend's look) if it is the latest asked for. */
function onStylePreview(data) {
  if (typeof data?.preview !== "string" || !data.preview.startsWith("data:image/jpeg;base64,")) return;
  if (Array.isArray(data.style)) {
    if (latest.get("blend") !== data.requestId) return;
    $("blend-preview").src = data.preview;
    $("blend-preview").hidden = false;
    return;
  }
  const name = data.style === ownKey ? "own" : data.style;
  if (latest.get(name) !== data.requestId) return;  // an older request's: a newer one is on its way
  const tile = tileOf(name);
  setShown(tile, data.preview);
  if (tile) delete tile.dataset.previewing;
}

let loaded = false;
client.addEventListener("status", async () => {
  if (client.status === "reconnecting" && job) {
    message("The connection was lost. Your job keeps running; reconnecting to get its result…");
  }
  if (client.status !== "connected") return;
  // a new connection gets no pushes for a job sent on an earlier one: ask for it
  if (job) checkJob();
  // previews asked for on a connection that was lost never came: ask again
  if (loaded && photo && document.querySelector(".style[data-name]:not([data-preview])")) previewAll();
  if (!loaded) {
    loaded = true;
    const [styles] = await Promise.all([loadStyles(), loadService()]);
    loaded = styles;
    if (job) startCountdown();
  }
});
if (job) {  // sent before a reload
  $("job").dataset.jobId = job.jobId;
  showBefore(job.before);
  view("running");
  message("Looking for your painting…");
}
showMine();
client.connect();
