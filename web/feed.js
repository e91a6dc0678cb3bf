// The Feed page: every public result, newest first, with a featured before/after pair that
// rotates, each with its own page (painting.html?id=) and a download. Loaded with LIST_IMAGES and
// kept current by the public TRANSFER_STYLE_COMPLETED broadcast, and by IMAGE_REMOVED when an
// owner takes a painting back; after a reconnect (API Gateway closes idle connections after 10 minutes and every
// connection after 2 hours) LIST_IMAGES is read again, to fill in what was missed meanwhile.
// Paintings are named by their titles from LIST_STYLES, as on the request page; until those
// arrive (or if they never do) a style is named from its name ("starry-night": "Starry Night").

import {
  ServiceClient, ServiceError, ago, checkedImage, isJobId, ownOrTitle, paintingName, paintingUrl, repaintedIn,
  showConnection, showUnavailable, websocketUrl,
} from "./client.js";

const $ = (id) => document.getElementById(id);
const ROTATE_MS = 5000;
const FEATURED_MAX = 12;  // the rotation goes through the newest results
const PAGE = 24;
const GAP_PAGES = 5;  // after a reconnect, read at most this many pages to reach what is shown

const images = new Map();  // jobId → {jobId, input, result, style, completedAt}
let order = [];  // jobIds, newest first
let featured = null;  // the jobId shown large
let cursor = null;  // where the next older page starts (null: there is none)
let loads = 0;
let paused = matchMedia("(prefers-reduced-motion: reduce)").matches;
let holding = false;  // pointer or focus on the featured pair
let rotation = null;

const titles = new Map();  // style name → its title from LIST_STYLES ("The Starry Night")
const titleOf = (name) => titles.get(name) ?? ownOrTitle(name);
/** A painting's name: its title, or a blend's titles and shares. */
const nameOf = (image) => paintingName(image.style, image.blend, titleOf);
/** "the Starry Night style", "a blend of The Starry Night 70% · The Scream 30%" */
const inWhat = (image) => repaintedIn(image.style, image.blend, titleOf);
// What a Feed entry must be before the page uses it: client.js's checkedImage (a job id of 32 hex
// digits, http(s) image URLs, a style name, a time a Date can hold, a blend's shares).
const checked = checkedImage;
const fileName = (image) => `repainted-${image.style}-${image.jobId.slice(0, 8)}.jpg`;

function element(tag, properties = {}, ...children) {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children);
  return node;
}

function tile(image) {
  const title = nameOf(image);
  const time = element("time", { dateTime: new Date(image.completedAt).toISOString(), textContent: ago(image.completedAt) });
  time.dataset.ms = image.completedAt;
  const button = element("button", { type: "button", className: "tile", title: "Show it large" },
    element("span", { className: "tile-pair" },
      element("img", { src: image.input, alt: "A photo", loading: "lazy", decoding: "async" }),
      element("img", { src: image.result, alt: `The photo, repainted in ${inWhat(image)}`, loading: "lazy",
        decoding: "async" })));
  button.addEventListener("click", () => {
    feature(image.jobId);
    restartRotation();
    $("featured").scrollIntoView({ behavior: "smooth", block: "nearest" });
  });
  const links = element("p", { className: "tile-links" },
    element("a", { href: paintingUrl(image.jobId), className: "tile-open", textContent: "Its page" }),
    element("a", { href: image.result, className: "tile-download", textContent: "Download", download: fileName(image),
      target: "_blank", rel: "noopener" }));
  const item = element("li", {}, button, element("p", { className: "tile-caption" },
    element("span", { className: "style-name", textContent: title }), time), links);
  item.dataset.jobId = image.jobId;
  return item;
}

/** Takes a painting away (its owner took it back): from the grid, the rotation and the featured
 * pair, at once. */
function remove(jobId) {
  if (!images.has(jobId)) return;
  images.delete(jobId);
  order = order.filter((id) => id !== jobId);
  const item = $("gallery").querySelector(`[data-job-id="${CSS.escape(jobId)}"]`);
  item?.remove();
  if (featured === jobId) {
    featured = null;
    if (order.length) feature(order[0]);
  }
  updateShell();
}

/** Adds a result once, in its place by time; returns whether it was new (false for an entry that
 * is not one: see `checked`). */
function add(entry) {
  const image = checked(entry);
  if (!image || images.has(image.jobId)) return false;
  const item = tile(image);  // first: nothing is recorded for an entry that cannot be shown
  images.set(image.jobId, image);
  const at = order.findIndex((id) => images.get(id).completedAt < image.completedAt);
  const index = at < 0 ? order.length : at;
  order.splice(index, 0, image.jobId);
  const next = index + 1 < order.length
    ? $("gallery").querySelector(`[data-job-id="${CSS.escape(order[index + 1])}"]`) : null;
  $("gallery").insertBefore(item, next);
  return true;
}

function updateShell() {
  const count = order.length;
  $("count").textContent = count ? `(${count}${cursor ? "+" : ""})` : "";
  $("empty").hidden = count > 0 || loads === 0;
  $("featured").hidden = count === 0;
  $("more").hidden = !cursor;
}

// --- the featured pair ------------------------------------------------------------------------

async function feature(jobId, { fresh = false } = {}) {
  const image = images.get(jobId);
  if (!image) return;
  featured = jobId;
  // load both images before showing them, so the pair changes at once
  await Promise.allSettled([image.input, image.result].map((src) => Object.assign(new Image(), { src }).decode()));
  if (featured !== jobId) return;
  $("featured-before").src = image.input;
  $("featured-before").alt = "A photo";
  $("featured-after").src = image.result;
  $("featured-open").href = paintingUrl(image.jobId);
  $("featured-download").href = image.result;
  $("featured-download").download = fileName(image);
  label(image);
  $("featured-new").hidden = !fresh;
  const slide = $("featured-slide");
  slide.dataset.jobId = jobId;
  slide.classList.remove("enter");
  void slide.offsetWidth;  // restart the fade-in
  slide.classList.add("enter");
  for (const item of $("gallery").children) item.classList.toggle("current", item.dataset.jobId === jobId);
}

/** The featured pair's words: its style's title in the caption and the image's text, its place in
 * the rotation, and the slide's label. */
function label(image) {
  const title = nameOf(image);
  const ring = order.slice(0, FEATURED_MAX);
  const position = ring.indexOf(image.jobId);
  $("featured-after").alt = `The photo, repainted in ${inWhat(image)}`;
  $("featured-caption").textContent = `After: ${title} · ${ago(image.completedAt)}`;
  $("featured-position").textContent = position >= 0 ? `${position + 1} of ${ring.length}` : "";
  $("featured-slide").setAttribute("aria-label", `${position + 1} of ${ring.length}: ${title}`);
}

/** The paintings' titles (LIST_STYLES), then every shown name in their words. */
async function loadTitles() {
  let styles;
  try {
    ({ styles } = await client.request({ action: "LIST_STYLES" }, "STYLES"));
  } catch {
    return;  // the names' own words stay: a Feed without titles is still a Feed
  }
  for (const style of styles) if (typeof style.title === "string") titles.set(style.name, style.title);
  for (const item of [...$("gallery").children]) {
    const fresh = tile(images.get(item.dataset.jobId));
    fresh.classList.toggle("current", item.classList.contains("current"));
    item.replaceWith(fresh);
  }
  if (featured && $("featured-slide").dataset.jobId === featured) label(images.get(featured));
}

function step(by) {
  const ring = order.slice(0, FEATURED_MAX);
  if (!ring.length) return;
  const position = ring.indexOf(featured);
  feature(ring[(position + by + ring.length) % ring.length]);
}

function restartRotation() {
  clearInterval(rotation);
  rotation = setInterval(() => { if (!paused && !holding && !document.hidden) step(1); }, ROTATE_MS);
}

function setPaused(value) {
  paused = value;
  $("pause").setAttribute("aria-pressed", String(paused));
  $("pause").setAttribute("aria-label", paused ? "Play the rotation" : "Pause the rotation");
  $("pause").textContent = paused ? "▶" : "❚❚";
}

$("previous").addEventListener("click", () => { step(-1); restartRotation(); });
$("next").addEventListener("click", () => { step(1); restartRotation(); });
$("pause").addEventListener("click", () => setPaused(!paused));
$("featured").addEventListener("pointerenter", () => { holding = true; });
$("featured").addEventListener("pointerleave", () => { holding = false; });
$("featured").addEventListener("focusin", () => { holding = true; });
$("featured").addEventListener("focusout", () => { holding = false; });
setPaused(paused);
restartRotation();
setInterval(() => {  // keep "5 min ago" true
  for (const time of document.querySelectorAll("time[data-ms]")) time.textContent = ago(Number(time.dataset.ms));
}, 30000);

// --- loading ----------------------------------------------------------------------------------

/** The newest page, and on a reconnect the pages down to what is already shown. */
async function load() {
  const first = loads === 0;
  try {
    let page = await client.request({ action: "LIST_IMAGES", limit: PAGE }, "IMAGES");
    for (let pages = 1; ; pages += 1) {
      const entries = Array.isArray(page?.images) ? page.images : [];
      const known = entries.some((image) => images.has(image?.jobId));
      for (const image of entries) add(image);
      if (first) cursor = page.cursor;
      if (first || known || !page.cursor || pages >= GAP_PAGES) break;
      page = await client.request({ action: "LIST_IMAGES", limit: PAGE, cursor: page.cursor }, "IMAGES");
    }
    loads += 1;
    document.body.dataset.loads = String(loads);
    document.body.dataset.state = "loaded";
    $("loading").hidden = true;
    $("feed-error").hidden = true;
    if (!featured && order.length) feature(order[0]);
  } catch (error) {
    if (error instanceof ServiceError) {
      $("feed-error").textContent = `The Feed could not be loaded: ${error.message}.`;
      $("feed-error").hidden = false;
    }  // else the connection dropped: the reconnect loads again
  }
  updateShell();
}

$("more").addEventListener("click", async () => {
  $("more").disabled = true;
  try {
    const page = await client.request({ action: "LIST_IMAGES", limit: PAGE, cursor }, "IMAGES");
    for (const image of Array.isArray(page?.images) ? page.images : []) add(image);
    cursor = page.cursor;
  } catch (error) {
    $("feed-error").textContent = `Older results could not be loaded: ${error.message}.`;
    $("feed-error").hidden = false;
  } finally {
    $("more").disabled = false;
    updateShell();
  }
});

let client;
try {
  client = new ServiceClient(await websocketUrl());
} catch (error) {
  showUnavailable($("status"));
  $("loading").hidden = true;
  $("feed-error").textContent = `This page cannot reach the service: ${error.message}.`;
  $("feed-error").hidden = false;
  throw error;
}
showConnection(client, $("status"), $("offline"));
client.addEventListener("push", ({ detail: { event, data } }) => {
  if (event === "IMAGE_REMOVED" && isJobId(data?.jobId)) {  // taken back by its owner
    remove(data.jobId);
    return;
  }
  if (event !== "TRANSFER_STYLE_COMPLETED" || !add(data)) return;  // a public result, live (checked)
  feature(data.jobId, { fresh: true });
  restartRotation();
  updateShell();
});
client.addEventListener("status", () => {
  if (client.status !== "connected") return;
  load();
  if (!titles.size) loadTitles();
});
client.connect();
