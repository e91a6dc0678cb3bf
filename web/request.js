import { ServiceClient, imageField, shrink, websocketUrl } from "./client.js";

const $ = (id) => document.getElementById(id);
const client = new ServiceClient(await websocketUrl());
client.addEventListener("status", (e) => { $("status").textContent = e.detail; });
let job = JSON.parse(sessionStorage.getItem("job") || "null");  // survives a reload

client.addEventListener("push", ({ detail: { event, data } }) => {
  if (!job || !event.endsWith(`::${job.jobId}`)) return;
  if (event.startsWith("TRANSFER_STYLE_PROGRESS")) showProgress(data.progress);
  else if (event.startsWith("TRANSFER_STYLE_COMPLETED")) showResult(data.result);
  else if (event.startsWith("TRANSFER_STYLE_FAILED")) showError(`The job failed: ${data.error}`);
});
client.addEventListener("status", async (e) => {
  // after a reconnect the new connection gets no pushes for the old job: ask for it
  if (e.detail === "connected" && job) await recover();
});
await client.connect();

const styles = await client.request({ action: "LIST_STYLES" }, "STYLES").catch(() => ({ styles: [] }));
for (const [i, style] of styles.styles.entries()) {
  const label = document.createElement("label");
  label.className = "style";
  label.innerHTML = `<input type="radio" name="style" value="${style.name}" ${i === 0 ? "checked" : ""}>
    <img src="${style.previewUrl}" alt=""><span>${style.name.replaceAll("-", " ")}</span>`;
  $("styles").append(label);
}

$("photo").addEventListener("change", () => {
  const file = $("photo").files[0];
  if (file) { $("preview").src = URL.createObjectURL(file); $("preview").hidden = false; }
});

$("request").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("photo").files[0];
  if (!file) return showError("Choose a photo first.");
  if (!file.type.startsWith("image/")) return showError("That file is not an image.");
  $("submit").disabled = true;
  $("job").hidden = false;
  $("after").hidden = $("download").hidden = true;
  showProgress(0, "Uploading…");
  try {
    const photo = await shrink(file);
    $("before").src = URL.createObjectURL(photo);
    const own = $("own-style").files[0];
    const style = own ? await imageField(client, await shrink(own, 1024)) : document.querySelector("input[name=style]:checked")?.value;
    if (!style) throw new Error("Pick a style.");
    const accepted = await client.request({
      action: "TRANSFER_STYLE",
      image: await imageField(client, photo),
      style,
      isPrivate: $("private").checked,
      options: { preset: "preview", strength: Number($("strength").value), preserveColors: $("colors").checked },
    }, "TRANSFER_STYLE_ACCEPTED");
    job = accepted;
    sessionStorage.setItem("job", JSON.stringify(job));
    showProgress(0, "Waiting for a painter…");
  } catch (error) {
    showError(error.message);
  }
});

async function recover() {
  try {
    const state = await client.request({ action: "GET_JOB", jobId: job.jobId, jobToken: job.jobToken }, "JOB");
    if (state.status === "SUCCEEDED") showResult(state.result);
    else if (state.status === "FAILED") showError(`The job failed: ${state.error}`);
    else { $("job").hidden = false; showProgress(state.progress); }
  } catch { /* an expired or unknown job: nothing to recover */ }
}

function showProgress(value, text) {
  $("progress").value = value;
  $("message").textContent = text ?? `Painting… ${Math.round(value * 100)}%`;
}

function showResult(url) {
  $("job").hidden = false;
  $("progress").value = 1;
  $("message").textContent = "Done.";
  $("after").src = url;
  $("after").hidden = false;
  $("download").href = url;
  $("download").hidden = false;
  $("submit").disabled = false;
  sessionStorage.removeItem("job");
}

function showError(text) {
  $("job").hidden = false;
  $("message").textContent = text;
  $("message").className = "error";
  $("submit").disabled = false;
  sessionStorage.removeItem("job");
}
