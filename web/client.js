// The service's WebSocket protocol for the pages: one connection that reconnects by itself,
// requests answered by event name, and listeners for pushed events (see docs/protocol.md).
// Shared by index.html and feed.html; plain ES modules, no build step.

export async function websocketUrl() {
  // Local stack: /config.json names the gateway. In AWS the deploy writes the same file.
  const response = await fetch("config.json", { cache: "no-store" });
  if (!response.ok) throw new Error("config.json is missing: the page does not know the service's address");
  const url = (await response.json()).websocketUrl;
  // A stack with an AccessKey (docs/deployment.md) is opened as .../index.html?key=KEY: the key goes
  // on to $connect (never into config.json, which anyone can read), and is kept for this tab, so
  // that the links between the pages need not carry it.
  const key = new URLSearchParams(location.search).get("key") ?? sessionStorage.getItem("accessKey");
  if (!key) return url;
  sessionStorage.setItem("accessKey", key);
  const withKey = new URL(url);
  withKey.searchParams.set("key", key);
  return withKey.toString();
}

/**
 * One WebSocket connection to the service, kept open: API Gateway closes a connection after 10
 * idle minutes and every connection after 2 hours, and phones drop them when they sleep, so a
 * closed connection is opened again (after 0.5 s, then up to 10 s apart), at once when the
 * browser comes back online or the page is shown again.
 *
 * Events: "status" (detail: "connecting", "connected" or "reconnecting"; `generation` counts the
 * connections opened, so a page can tell a reconnect from the first connection) and "push"
 * (detail: {event, data}: a message that answers no request).
 */
export class ServiceClient extends EventTarget {
  constructor(url, { answerTimeout = 30000, connectTimeout = 15000 } = {}) {
    super();
    this.url = url;
    this.socket = null;
    this.status = "connecting";
    this.generation = 0;  // connections opened so far
    this.waiting = [];  // {events: Set, action, resolve, reject, timer}
    this.retry = 500;
    this.timer = null;
    this.closed = false;
    this.answerTimeout = answerTimeout;
    this.connectTimeout = connectTimeout;
    window.addEventListener("online", () => this.wake());
    document.addEventListener("visibilitychange", () => { if (!document.hidden) this.wake(); });
  }

  /** Open the connection; resolves once it is open (it keeps trying until then). */
  connect() {
    const opened = this.#opened();
    this.#open();
    return opened;
  }

  /** Reconnect now if the connection is down and waiting for its next try. */
  wake() {
    if (this.closed || this.timer === null) return;
    clearTimeout(this.timer);
    this.timer = null;
    this.#open();
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.socket?.close();
  }

  #setStatus(status) {
    this.status = status;
    this.dispatchEvent(new CustomEvent("status", { detail: status }));
  }

  #open() {
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.retry = 500;
      this.generation += 1;
      this.#setStatus("connected");
    });
    socket.addEventListener("message", (message) => this.#receive(message.data));
    socket.addEventListener("close", () => {
      if (socket !== this.socket) return;
      for (const waiter of this.waiting.splice(0)) {
        clearTimeout(waiter.timer);
        waiter.reject(new Error("the connection to the service was lost"));
      }
      if (this.closed) return;
      this.#setStatus("reconnecting");
      this.timer = setTimeout(() => { this.timer = null; this.#open(); }, this.retry);
      this.retry = Math.min(this.retry * 2, 10000);
    });
  }

  #opened(timeout) {
    if (this.socket?.readyState === WebSocket.OPEN) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = timeout && setTimeout(() => {
        this.removeEventListener("status", onStatus);
        reject(new Error("there is no connection to the service; check your network and try again"));
      }, timeout);
      const onStatus = () => {
        if (this.status !== "connected") return;
        clearTimeout(timer);
        this.removeEventListener("status", onStatus);
        resolve();
      };
      this.addEventListener("status", onStatus);
    });
  }

  #receive(text) {
    let message;
    try { message = JSON.parse(text); } catch { return; }
    const { event, data } = message ?? {};
    if (typeof event !== "string") return;
    const index = this.waiting.findIndex((w) => (w.events.has(event) && w.matches(data)) ||
      (event === "ERROR" && data?.action === w.action));
    if (index >= 0) {
      const [waiter] = this.waiting.splice(index, 1);
      clearTimeout(waiter.timer);
      if (event === "ERROR") waiter.reject(new ServiceError(data.message));
      else waiter.resolve(data);
      return;
    }
    this.dispatchEvent(new CustomEvent("push", { detail: { event, data } }));
  }

  /**
   * Send a request and resolve with the data of its answer event. Rejects with a ServiceError
   * carrying an ERROR's message, or an Error when there is no connection (after waiting
   * `connectTimeout` for one), the connection is lost before the answer, or no answer comes.
   * Answers to concurrent requests can come in any order: `matches(data)` picks this one's.
   */
  async request(body, answerEvent, matches = () => true) {
    const text = JSON.stringify(body);
    if (byteLength(text) > FRAME_LIMIT) {  // it would close the connection: never sent
      throw new Error(`the request is ${byteLength(text)} bytes, over the ${FRAME_LIMIT} a message may have`);
    }
    await this.#opened(this.connectTimeout);
    return new Promise((resolve, reject) => {
      const waiter = { events: new Set([answerEvent]), action: body.action, matches, resolve, reject };
      waiter.timer = setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(waiter), 1);
        reject(new Error("the service did not answer; please try again"));
      }, this.answerTimeout);
      this.waiting.push(waiter);
      this.socket.send(text);
    });
  }
}

/** A request the service refused: `message` says what to fix. */
export class ServiceError extends Error {}

const SIGNATURES = [
  ["image/jpeg", [0xff, 0xd8, 0xff]],
  ["image/png", [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]],
];

/** The type a file's first bytes say it is (JPEG, PNG or WebP), whatever its name claims; or null. */
export async function sniff(blob) {
  const head = new Uint8Array(await blob.slice(0, 12).arrayBuffer());
  for (const [type, signature] of SIGNATURES) {
    if (signature.every((byte, i) => head[i] === byte)) return type;
  }
  const text = String.fromCharCode(...head);
  if (text.startsWith("RIFF") && text.slice(8, 12) === "WEBP") return "image/webp";
  return null;
}

/** Decodes a file as an image, or throws: the check a photo passes before anything is sent. */
export async function decode(file) {
  try {
    return await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    throw new Error("cannot decode");
  }
}

/**
 * A photo ready to send: a JPEG, PNG or WebP Blob of the type its bytes are, no larger than
 * maxSide px and 4 MB. Phone photos are made smaller (and turned upright) in the browser; other
 * formats the browser can read (GIF, BMP, AVIF, ...) become JPEG.
 */
export async function shrink(file, maxSide = 2048) {
  const bitmap = await decode(file);
  const scale = Math.min(1, maxSide / Math.max(bitmap.width, bitmap.height));
  const type = await sniff(file);
  if (scale === 1 && file.size < 4 * 1024 * 1024 && type) {
    bitmap.close();
    return file.type === type ? file : new Blob([file], { type });
  }
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";  // transparency becomes white, as the engine does
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
}

/** A small JPEG data URL of an image (for showing it again after a reload); `blob` may also be an
 * <img> that has loaded (of this page's origin, or a data: URL: others would taint the canvas). */
export async function thumbnail(blob, maxSide = 480, quality = 0.8) {
  const bitmap = blob instanceof Blob ? await decode(blob) : blob;
  const scale = Math.min(1, maxSide / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close?.();
  return canvas.toDataURL("image/jpeg", quality);
}

/** A JPEG data URL of at most `maxSide` px and `maxChars` characters (lower qualities until it
 * fits): the photo as PREVIEW_STYLES takes it inline, well inside one 32 KB frame. */
export async function smallJpeg(blob, maxSide = 256, maxChars = 24 * 1024) {
  for (const quality of [0.85, 0.7, 0.55, 0.4]) {
    const url = await thumbnail(blob, maxSide, quality);
    if (url.length <= maxChars) return url;
  }
  throw new Error("the photo does not fit in a message even at low quality");
}

/** The width and height of an image file as the service will see it: upright (EXIF) and no
 * larger than `maxSide` (the page sends photos of at most 2048 px). */
export async function imageSize(blob, maxSide = 2048) {
  const bitmap = await decode(blob);
  const scale = Math.min(1, maxSide / Math.max(bitmap.width, bitmap.height));
  const size = [Math.max(1, Math.round(bitmap.width * scale)), Math.max(1, Math.round(bitmap.height * scale))];
  bitmap.close();
  return size;
}

export function dataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

// API Gateway closes a connection (1009) on a frame over 32 KB, and a browser sends each message as
// one frame: every whole message must fit in one. Images that do not go to S3 first.
export const FRAME_LIMIT = 32 * 1024;
const UPLOAD_KEY = `uploads/${"0".repeat(32)}.webp`;  // as long as any key REQUEST_UPLOAD hands out

/** A message's size on the wire: its UTF-8 bytes. */
export const byteLength = (text) => new TextEncoder().encode(text).length;

/** How long a blob's data URL is, without reading the blob. */
const dataUrlLength = (blob) => `data:${blob.type || "application/octet-stream"};base64,`.length + 4 * Math.ceil(blob.size / 3);

/**
 * The message `build(fields)` with the images of `blobs` ({field: Blob}) as fields: as many as fit
 * inline (data URLs, smallest first) while the whole message stays within one frame; the others,
 * and those named in `uploadOnly`, uploaded first with REQUEST_UPLOAD and named by their keys.
 * Sizes are worked out before anything is read: base64 needs no escaping in JSON, so a placeholder
 * of a data URL's length weighs the same.
 */
export async function withImages(client, blobs, build, { uploadOnly = [] } = {}) {
  const names = Object.keys(blobs).sort((a, b) => blobs[a].size - blobs[b].size);
  const planned = Object.fromEntries(names.map((name) => [name, UPLOAD_KEY]));
  const inline = new Set();
  for (const name of names.filter((n) => !uploadOnly.includes(n))) {
    const trial = { ...planned, [name]: "x".repeat(dataUrlLength(blobs[name])) };
    if (byteLength(JSON.stringify(build(trial))) <= FRAME_LIMIT) {
      planned[name] = trial[name];
      inline.add(name);
    }
  }
  const fields = {};
  for (const name of names) {
    fields[name] = inline.has(name) ? await dataUrl(blobs[name]) : await upload(client, blobs[name]);
  }
  return build(fields);
}

/** Uploads a blob through a presigned POST (REQUEST_UPLOAD); its key. */
export async function upload(client, blob) {
  const ready = await client.request({ action: "REQUEST_UPLOAD", contentType: blob.type, size: blob.size }, "UPLOAD_READY");
  const form = new FormData();
  for (const [name, value] of Object.entries(ready.fields)) form.append(name, value);
  form.append("file", blob);
  // no-cors: the POST is a simple request S3 accepts from any page; its answer cannot be read
  // then, but TRANSFER_STYLE checks the upload and says clearly if it is missing
  try {
    await fetch(ready.url, { method: "POST", body: form, mode: "no-cors" });
  } catch {
    throw new Error("the photo could not be uploaded; check your network and try again");
  }
  return ready.key;
}

/**
 * Shares a link the way the device does: its share sheet (the Web Share API, on phones and some
 * desktops), else the clipboard. "shared", "copied", "cancelled" (the sheet was closed) or
 * "failed" (neither is allowed here: the page shows the link to copy by hand).
 */
export async function shareLink(url, title) {
  if (typeof navigator.share === "function") {
    try {
      await navigator.share({ title, url });
      return "shared";
    } catch (error) {
      if (error?.name === "AbortError") return "cancelled";
    }
  }
  try {
    await navigator.clipboard.writeText(url);
    return "copied";
  } catch {
    return "failed";
  }
}

/** A public painting's own page (its permalink), beside this page. */
export const paintingUrl = (jobId) => new URL(`painting.html?id=${jobId}`, location.href).href;

// What a public painting must be before a page uses any of it (a broadcast, a LIST_IMAGES or
// GET_IMAGE entry: anything the service sends is checked, as a bad one would otherwise break a
// selector or a Date, or leave a page half-updated): a job id of 32 hex digits, http(s) image
// URLs, a style name, a time a Date can hold, and for a blend 2 or 3 {style, weight}.
const JOB_ID = /^[0-9a-f]{32}$/;
const STYLE = /^[a-z0-9][a-z0-9-]{0,39}$/;  // a catalogue name, or "custom"
const LATEST_MS = 8.64e15;  // the largest time a Date holds
export const isJobId = (text) => typeof text === "string" && JOB_ID.test(text);
export const isStyleName = (text) => typeof text === "string" && STYLE.test(text);
export const webUrl = (text) => {
  try {
    return typeof text === "string" && ["http:", "https:"].includes(new URL(text, location.href).protocol);
  } catch {
    return false;
  }
};
const isTime = (ms) => Number.isFinite(ms) && ms > 0 && ms <= LATEST_MS;

/** A blend's shares, checked: [{style, weight}] of 2 or 3, or null (not a blend, or not one this
 * page can show). */
export function checkedBlend(blend) {
  if (!Array.isArray(blend) || blend.length < 2 || blend.length > 3) return null;
  const shares = blend.map((share) => ({ style: share?.style, weight: share?.weight }));
  const ok = shares.every(({ style, weight }) => isStyleName(style) && Number.isFinite(weight) && weight >= 0 && weight <= 1);
  return ok ? shares : null;
}

/** A public painting's fields, checked; null when it is not one this page can show. */
export function checkedImage(image) {
  if (!image || typeof image !== "object") return null;
  const { jobId, input, result, style, completedAt } = image;
  const ok = isJobId(jobId) && webUrl(input) && webUrl(result) && isStyleName(style) && isTime(completedAt);
  if (!ok) return null;
  const blend = image.blend === undefined ? null : checkedBlend(image.blend);
  if (image.blend !== undefined && !blend) return null;
  return { jobId, input, result, style, completedAt, blend };
}

/** A painting's name for people: its title, or a blend's titles with their shares
 * ("The Starry Night 70% · The Scream 30%"); `titleOf` turns a style name into its title. */
export function paintingName(style, blend, titleOf) {
  if (!blend) return titleOf(style);
  return blend.map(({ style: name, weight }) => `${titleOf(name)} ${Math.round(weight * 100)}%`).join(" · ");
}

/** A style name's words when no title is known: "custom" is a user's own style image. */
export const ownOrTitle = (name) => (name === "custom" ? "Own style" : styleTitle(name));

/** What a painting is "repainted in", for alt texts: "the Waves style", "The Starry Night style",
 * "a blend of The Scream 70% · Waves 30%", or for a user's own style image `own`. */
export function repaintedIn(style, blend, titleOf, own = "its maker's own style image") {
  if (blend) return `a blend of ${paintingName(style, blend, titleOf)}`;
  return style === "custom" ? own : inStyle(titleOf(style));
}

/** "just now", "5 min ago", "3 h ago", or a date: when something happened, for people. */
export function ago(ms, now = Date.now()) {
  const seconds = Math.max(0, (now - ms) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(ms).toLocaleDateString(undefined, { day: "numeric", month: "short", year: "numeric" });
}

/** A style's name for people: "stained-glass" → "Stained Glass". */
export const styleTitle = (name) => name.split("-").map((word) => word.charAt(0).toUpperCase() + word.slice(1)).join(" ");

/** "the Stained Glass style", but "The Starry Night style": a painting's title has its own article. */
export const inStyle = (title) => `${/^the /i.test(title) ? title : `the ${title}`} style`;

/** Marks the header's indicator when the page cannot even find the service (config.json unreadable). */
export function showUnavailable(indicator) {
  indicator.dataset.state = "reconnecting";
  indicator.textContent = indicator.title = "Unavailable";
}

/** Shows the connection's state in the header's indicator and, while it is down, a banner. */
export function showConnection(client, indicator, banner) {
  const words = { connecting: "Connecting…", connected: "Connected", reconnecting: "Reconnecting…" };
  const update = () => {
    indicator.dataset.state = client.status;
    indicator.textContent = indicator.title = words[client.status] ?? client.status;
    banner.hidden = client.status !== "reconnecting";
  };
  client.addEventListener("status", update);
  update();
}
