import { ServiceClient, websocketUrl } from "./client.js";

const $ = (id) => document.getElementById(id);
const client = new ServiceClient(await websocketUrl());
const shown = new Set();
client.addEventListener("status", (e) => { $("status").textContent = e.detail; });
client.addEventListener("push", ({ detail: { event, data } }) => {
  if (event === "TRANSFER_STYLE_COMPLETED") add(data, true);  // public results, live
});
await client.connect();
const page = await client.request({ action: "LIST_IMAGES", limit: 20 }, "IMAGES");
for (const image of page.images) add(image, false);

function add(image, newest) {
  if (shown.has(image.jobId)) return;
  shown.add(image.jobId);
  $("empty").hidden = true;
  const item = document.createElement("li");
  item.dataset.jobId = image.jobId;
  item.innerHTML = `<figure><img src="${image.input}" alt="Photo"><img src="${image.result}" alt="Repainted in ${image.style}">
    <figcaption>${image.style.replaceAll("-", " ")}</figcaption></figure>`;
  if (newest) $("gallery").prepend(item);
  else $("gallery").append(item);
}
