// How long a painting takes, worked out from what the service says (GET_SERVICE: docs/protocol.md):
// the sizes its device is offered at, each with its scales and iterations, and the pace its workers
// measured (seconds per megapixel-iteration). A painting's work is, over its scales, the photo's
// pixels at that scale times the iterations; the estimate is the pace times the work, plus a
// worker's start when none is up. Nothing here knows how fast any device is.

/** The photo's size at a scale whose long side is `side` px (the engine's arithmetic). */
export function fit(width, height, side) {
  const scale = side / Math.max(width, height);
  return [Math.max(1, Math.round(width * scale)), Math.max(1, Math.round(height * scale))];
}

/** The long side of each scale, smallest first: `count` scales √2 apart, ending at `size`, none
 * under `least` px (the engine's arithmetic, for a size the service did not offer: ?size=N). */
export function scaleSides(size, count, least = 64) {
  const sides = new Set();
  for (let k = count - 1; k >= 0; k -= 1) sides.add(Math.max(least, Math.round(size / Math.SQRT2 ** k)));
  return [...sides].sort((a, b) => a - b);
}

/** An offer of the service at another size: the same preset, its scales at that size. */
export function offerAt(offer, size) {
  return { ...offer, size, scales: scaleSides(size, offer.scales.length) };
}

/** Megapixel-iterations of a photo's painting at an offer's size, or of its first `iterations`
 * iterations (a job's progress counts iterations across the scales, smallest first). */
export function work(offer, width, height, iterations = Infinity) {
  let done = 0;
  let left = iterations;
  for (const side of offer.scales) {
    const [w, h] = fit(width, height, side);
    const here = Math.min(left, offer.iterations);
    done += (w * h * here) / 1e6;
    left -= here;
    if (left <= 0) break;
  }
  return done;
}

/** What the service's measurements say of a painting: {painting, start} in seconds (null where
 * nothing was measured) and what they are based on. */
export function estimate(service, offer, width, height) {
  const pace = service?.pace?.secondsPerMegapixelIteration;
  const painting = Number.isFinite(pace) && pace > 0 ? work(offer, width, height) * pace : null;
  const start = service?.workersUp > 0 ? 0 : Number.isFinite(service?.startSeconds) ? service.startSeconds : null;
  return { painting, start, measuredAt: service?.pace?.measuredAt ?? null, device: service?.device ?? null };
}

/** Seconds in words: "about 5 s", "about 2 min". */
export function inWords(seconds) {
  if (seconds < 1) return "under a second";
  if (seconds < 90) return `about ${Math.round(seconds)} s`;
  if (seconds < 5400) return `about ${Math.round(seconds / 60)} min`;
  return `about ${Math.round(seconds / 3600)} h`;
}

/** The device in words: "GPU", "CPU". */
export const deviceWords = (device) => (device === "cuda" ? "GPU" : device === "cpu" ? "CPU" : "machine");

/**
 * A running job's time left, updated by each progress message: the work left times the pace seen
 * so far in this very job once two messages are apart (its own machine, its own load), else the
 * service's measured pace.
 */
export class Countdown {
  constructor(offer, width, height, pace) {
    this.offer = offer;
    this.size = [width, height];
    this.pace = Number.isFinite(pace) && pace > 0 ? pace : null;
    this.first = null;  // {at, done}: the first progress message's time and work done
    this.latest = null;  // {at, left}: seconds left as of the latest message
  }

  /** A progress message: iteration `iteration` of `total`, at time `at` (ms). */
  progress(iteration, at = performance.now()) {
    const done = work(this.offer, ...this.size, iteration);
    const left = Math.max(0, work(this.offer, ...this.size) - done);
    if (!this.first) this.first = { at, done };
    const seen = done - this.first.done;
    const pace = seen > 0 && at > this.first.at ? (at - this.first.at) / 1000 / seen : this.pace;
    this.latest = pace ? { at, left: left * pace } : null;
  }

  /** Seconds left now, or null when nothing says. */
  left(at = performance.now()) {
    if (!this.latest) return null;
    return Math.max(0, this.latest.left - (at - this.latest.at) / 1000);
  }
}
