// "Your paintings": the jobs this browser sent, kept in localStorage across reloads, with what it
// takes to open one again (its jobId and secret jobToken: GET_JOB) or take it back (DELETE_JOB).
// Nothing here leaves the browser but through those two requests.
//
// An entry: {jobId, jobToken, style (its name, for people), styleName, blend?, isPrivate,
// createdAt (ms), thumbnail (a small JPEG data URL, or null), done (true once painted)}.

import { checkedBlend, isJobId, isStyleName } from "./client.js";

const KEY = "paintings";
const MOST = 60;  // the newest are kept: each entry's thumbnail is a few KB of the browser's storage
const THUMBNAIL = /^data:image\/jpeg;base64,[A-Za-z0-9+/=]+$/;

/** An entry as stored, checked (storage can hold anything an older page or a user put there). */
function checked(entry) {
  if (!entry || typeof entry !== "object") return null;
  const { jobId, jobToken, style, styleName, isPrivate, createdAt, thumbnail, done } = entry;
  if (!isJobId(jobId) || typeof jobToken !== "string" || !jobToken || jobToken.length > 200) return null;
  return {
    jobId,
    jobToken,
    style: typeof style === "string" ? style.slice(0, 200) : "a painting",
    styleName: isStyleName(styleName) ? styleName : null,
    blend: checkedBlend(entry.blend),
    isPrivate: isPrivate !== false,  // unsure: private, so never offered as a public link
    createdAt: Number.isFinite(createdAt) ? createdAt : Date.now(),
    thumbnail: typeof thumbnail === "string" && THUMBNAIL.test(thumbnail) && thumbnail.length < 64 * 1024 ? thumbnail : null,
    done: done === true,
  };
}

/** Every entry, newest first. */
export function paintings() {
  let stored;
  try {
    stored = JSON.parse(localStorage.getItem(KEY) ?? "[]");
  } catch {
    return [];
  }
  return Array.isArray(stored) ? stored.map(checked).filter(Boolean) : [];
}

function save(entries) {
  let kept = entries.slice(0, MOST);
  for (;;) {
    try {
      localStorage.setItem(KEY, JSON.stringify(kept));
      return;
    } catch {  // the storage is full: the oldest go first, then everything but the newest
      if (kept.length <= 1) return;
      kept = kept.slice(0, Math.ceil(kept.length / 2));
    }
  }
}

/** Adds an entry (a new job), or updates it (its thumbnail, that it is done). */
export function keep(entry) {
  const fresh = checked(entry);
  if (!fresh) return;
  const entries = paintings();
  const at = entries.findIndex((e) => e.jobId === fresh.jobId);
  if (at >= 0) entries[at] = { ...entries[at], ...fresh, thumbnail: fresh.thumbnail ?? entries[at].thumbnail };
  else entries.unshift(fresh);
  save(entries);
}

export function update(jobId, changes) {
  const entries = paintings();
  const at = entries.findIndex((e) => e.jobId === jobId);
  if (at < 0) return;
  const changed = checked({ ...entries[at], ...changes });
  if (changed) entries[at] = changed;
  save(entries);
}

export function forget(jobId) {
  save(paintings().filter((e) => e.jobId !== jobId));
}

export const find = (jobId) => paintings().find((e) => e.jobId === jobId) ?? null;
