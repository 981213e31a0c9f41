// Rate analysis of a byte counter sampled over time (the WAN proxy's client → destination bytes).

export interface Sample {
  /** ms (performance.now()) */
  t: number;
  bytes: number;
}

export interface RateAnalysis {
  /** The steady part analysed: from 1% to 99% of the bytes moved (ramp-up and the manifest tail excluded). */
  fromMs: number;
  toMs: number;
  bytes: number;
  /** Average rate over that part, bytes/s. */
  average: number;
  windows: number;
  minWindow: number;
  maxWindow: number;
  /** max |window rate / cap - 1| over every window of `windowMs` (sliding by the sample step). */
  maxDeviation: number;
  averageDeviation: number;
}

/** Interpolated counter value at time t. */
function at(samples: Sample[], t: number): number {
  let lo = 0;
  let hi = samples.length - 1;
  if (t <= samples[0]!.t) return samples[0]!.bytes;
  if (t >= samples[hi]!.t) return samples[hi]!.bytes;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (samples[mid]!.t <= t) lo = mid;
    else hi = mid;
  }
  const a = samples[lo]!;
  const b = samples[hi]!;
  return a.bytes + ((b.bytes - a.bytes) * (t - a.t)) / (b.t - a.t || 1);
}

/** Time at which the counter first reaches `bytes` (interpolated). */
function timeOf(samples: Sample[], bytes: number): number {
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]!;
    const b = samples[i]!;
    if (b.bytes >= bytes) return b.bytes === a.bytes ? b.t : a.t + ((bytes - a.bytes) * (b.t - a.t)) / (b.bytes - a.bytes);
  }
  return samples[samples.length - 1]!.t;
}

export function analyseRate(samples: Sample[], cap: number, windowMs = 5000, stepMs = 100): RateAnalysis {
  const base = samples[0]?.bytes ?? 0;
  const total = (samples[samples.length - 1]?.bytes ?? 0) - base;
  const from = timeOf(samples, base + total * 0.01);
  const to = timeOf(samples, base + total * 0.99);
  const bytes = at(samples, to) - at(samples, from);
  const average = bytes / ((to - from) / 1000);
  let minW = Infinity;
  let maxW = 0;
  let n = 0;
  for (let t = from; t + windowMs <= to; t += stepMs) {
    const r = (at(samples, t + windowMs) - at(samples, t)) / (windowMs / 1000);
    minW = Math.min(minW, r);
    maxW = Math.max(maxW, r);
    n++;
  }
  if (n === 0) {
    minW = average;
    maxW = average;
  }
  return {
    fromMs: from,
    toMs: to,
    bytes,
    average,
    windows: n,
    minWindow: minW,
    maxWindow: maxW,
    maxDeviation: Math.max(Math.abs(minW / cap - 1), Math.abs(maxW / cap - 1)),
    averageDeviation: Math.abs(average / cap - 1),
  };
}
