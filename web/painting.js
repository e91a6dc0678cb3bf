// A public painting's own page (its permalink: painting.html?id=<jobId>), as the Feed and the
// request page's Share link to it: the pair, the painting's title and artist (or a blend's), when
// it was made, a download and a share. GET_IMAGE answers only while the painting is public; an
// IMAGE_REMOVED push for it (its owner took it back) empties the page at once.

import {
  ServiceClient, ServiceError, ago, checkedImage, isJobId, ownOrTitle, paintingName, paintingUrl, repaintedIn,
  shareLink, showConnection, showUnavailable, websocketUrl,
} from "./client.js";

const $ = (id) => document.getElementById(id);
const jobId = new URLSearchParams(location.search).get("id");
const styles = new Map();  // name → {title, artist, year} from LIST_STYLES
const titleOf = (name) => styles.get(name)?.title ?? ownOrTitle(name);
let image = null;

function gone(text) {
  image = null;
  document.body.dataset.state = "gone";
  $("loading").hidden = $("pair").hidden = $("download").hidden = $("share").hidden = true;
  $("painting-error").textContent = text;
  $("painting-error").hidden = false;
  $("painting-title").textContent = "This painting is not here";
  $("by").textContent = "";
  document.title = "Not here · Repaint";
}

function show() {
  if (!image) return;
  const name = paintingName(image.style, image.blend, titleOf);
  const painters = (image.blend ?? [{ style: image.style }]).map(({ style }) => styles.get(style)).filter(Boolean);
  const by = painters.map((s) => [s.artist, s.year].filter(Boolean).join(", ")).filter(Boolean).join(" and ");
  $("painting-title").textContent = `A photo in ${repaintedIn(image.style, image.blend, titleOf)}`;
  $("by").textContent = [by && `After ${by}`, `made ${ago(image.completedAt)}`].filter(Boolean).join(" · ");
  document.title = `${name} · Repaint`;
  $("before").src = image.input;
  $("after").src = image.result;
  $("after").alt = `The photo, repainted in ${repaintedIn(image.style, image.blend, titleOf)}`;
  $("after-caption").textContent = `After: ${name}`;
  $("download").href = image.result;
  $("download").download = `repainted-${image.style}-${image.jobId.slice(0, 8)}.jpg`;
  $("loading").hidden = $("painting-error").hidden = true;
  $("pair").hidden = $("download").hidden = $("share").hidden = false;
  document.body.dataset.state = "shown";
}

async function load() {
  try {
    image = checkedImage(await client.request({ action: "GET_IMAGE", jobId }, "IMAGE", (d) => d?.jobId === jobId));
  } catch (error) {
    if (error instanceof ServiceError) gone("This painting is no longer shared: its owner may have taken it back.");
    return;  // else the connection dropped: the reconnect asks again
  }
  if (!image) gone("This painting cannot be shown.");
  else show();
}

async function loadTitles() {
  try {
    const answer = await client.request({ action: "LIST_STYLES" }, "STYLES");
    for (const style of answer.styles) styles.set(style.name, style);
    show();
  } catch {
    // the style's name stands in for its title
  }
}

$("share").addEventListener("click", async () => {
  const url = paintingUrl(image.jobId);
  const outcome = await shareLink(url, $("painting-title").textContent);
  $("share-note").hidden = outcome === "cancelled";
  $("share-note").textContent = outcome === "shared" ? "Shared." : outcome === "copied"
    ? "The link is copied: paste it anywhere." : "Copy the link below to share it.";
  $("share-url").hidden = outcome !== "failed";
  if (outcome === "failed") {
    $("share-url").value = url;
    $("share-url").select();
  }
});

let client;
if (!isJobId(jobId)) {
  gone("This link does not name a painting. Find one in the Feed.");
  showUnavailable($("status"));
} else {
  try {
    client = new ServiceClient(await websocketUrl());
  } catch (error) {
    showUnavailable($("status"));
    gone(`This page cannot reach the service: ${error.message}.`);
    throw error;
  }
  showConnection(client, $("status"), $("offline"));
  client.addEventListener("push", ({ detail: { event, data } }) => {
    if (event === "IMAGE_REMOVED" && data?.jobId === jobId) gone("Its owner has just taken this painting back.");
  });
  client.addEventListener("status", () => {
    if (client.status !== "connected") return;
    if (document.body.dataset.state !== "gone") load();
    if (!styles.size) loadTitles();
  });
  client.connect();
}
