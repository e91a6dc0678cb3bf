// The service's WebSocket protocol for the pages: one connection that reconnects by itself,
// requests answered by event name, and listeners for pushed events (see README, "The WebSocket
// protocol"). Shared by index.html and feed.html; no build step.

export async function websocketUrl() {
  // Local stack: /config.json names the gateway. In AWS the deploy writes the same file.
  const response = await fetch("config.json", { cache: "no-store" });
  if (!response.ok) throw new Error("config.json is missing: the page does not know the service's address");
  return (await response.json()).websocketUrl;
}

export class ServiceClient extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.socket = null;
    this.waiting = [];  // {events: Set, action, resolve, reject}
    this.retry = 500;
    this.closed = false;
  }

  connect() {
    this.socket = new WebSocket(this.url);
    this.socket.addEventListener("open", () => {
      this.retry = 500;
      this.dispatchEvent(new CustomEvent("status", { detail: "connected" }));
    });
    this.socket.addEventListener("message", (message) => this.#receive(message.data));
    this.socket.addEventListener("close", () => {
      for (const waiter of this.waiting.splice(0)) waiter.reject(new Error("the connection was lost"));
      if (this.closed) return;
      // API Gateway closes idle connections after 10 minutes and every one after 2 hours
      this.dispatchEvent(new CustomEvent("status", { detail: "reconnecting" }));
      setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 10000);
    });
    return new Promise((resolve) => this.socket.addEventListener("open", resolve, { once: true }));
  }

  close() {
    this.closed = true;
    this.socket?.close();
  }

  #receive(text) {
    let message;
    try { message = JSON.parse(text); } catch { return; }
    const { event, data } = message;
    const index = this.waiting.findIndex((w) => w.events.has(event) || (event === "ERROR" && data?.action === w.action));
    if (index >= 0) {
      const [waiter] = this.waiting.splice(index, 1);
      if (event === "ERROR") waiter.reject(new Error(data.message));
      else waiter.resolve(data);
      return;
    }
    this.dispatchEvent(new CustomEvent("push", { detail: { event, data } }));
  }

  async #ready() {
    if (this.socket?.readyState === WebSocket.OPEN) return;
    await new Promise((resolve) => {
      const check = () => (this.socket?.readyState === WebSocket.OPEN ? resolve() : setTimeout(check, 100));
      check();
    });
  }

  /** Send a request and resolve with the data of its answer event (reject with an ERROR's message). */
  async request(body, answerEvent) {
    await this.#ready();
    return new Promise((resolve, reject) => {
      this.waiting.push({ events: new Set([answerEvent]), action: body.action, resolve, reject });
      this.socket.send(JSON.stringify(body));
    });
  }
}

/** A photo as a JPEG Blob no larger than maxSide px, so phone photos upload quickly. */
export async function shrink(file, maxSide = 2048) {
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  const scale = Math.min(1, maxSide / Math.max(bitmap.width, bitmap.height));
  if (scale === 1 && file.size < 4 * 1024 * 1024 && ["image/jpeg", "image/png", "image/webp"].includes(file.type)) {
    return file;
  }
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
}

export function dataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

// API Gateway closes a connection on a frame over 32 KB, and a browser sends each message as one
// frame: anything larger goes to S3 through a presigned POST.
const DATA_URL_LIMIT = 30 * 1024;

/** The `image`/`style` field for a blob: a data URL when small, else a presigned upload's key. */
export async function imageField(client, blob) {
  if (blob.size * 1.37 < DATA_URL_LIMIT) return dataUrl(blob);
  const upload = await client.request({ action: "REQUEST_UPLOAD", contentType: blob.type, size: blob.size }, "UPLOAD_READY");
  const form = new FormData();
  for (const [name, value] of Object.entries(upload.fields)) form.append(name, value);
  form.append("file", blob);
  // no-cors: the POST is a simple request S3 accepts from any page; its answer cannot be read
  // then, but TRANSFER_STYLE checks the upload and says clearly if it is missing
  await fetch(upload.url, { method: "POST", body: form, mode: "no-cors" });
  return upload.key;
}
