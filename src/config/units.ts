// Parsing of the human-friendly sizes and rates used in the config ("200Mbps", "25MB/s", "16MiB").

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1000,
  kb: 1000,
  m: 1000 ** 2,
  mb: 1000 ** 2,
  g: 1000 ** 3,
  gb: 1000 ** 3,
  t: 1000 ** 4,
  tb: 1000 ** 4,
  ki: 1024,
  kib: 1024,
  mi: 1024 ** 2,
  mib: 1024 ** 2,
  gi: 1024 ** 3,
  gib: 1024 ** 3,
  ti: 1024 ** 4,
  tib: 1024 ** 4,
};

/** Parses a byte size: a plain number of bytes, or "16MiB", "512KB", "1.5GB". Returns null when unparseable. */
export function parseSize(input: string | number): number | null {
  if (typeof input === 'number') return Number.isFinite(input) && input >= 0 ? Math.floor(input) : null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(input);
  if (!m) return null;
  const factor = SIZE_UNITS[m[2]!.toLowerCase()];
  if (factor === undefined) return null;
  return Math.floor(Number(m[1]) * factor);
}

/**
 * Parses a bandwidth into bytes per second. Bits: "200Mbps", "1Gbit/s", "800kbps".
 * Bytes: "25MB/s", "512KiB/s", "1GiB/s". A bare number is bytes per second; 0 means unlimited.
 * Returns null when unparseable.
 */
export function parseBandwidth(input: string | number): number | null {
  if (typeof input === 'number') return Number.isFinite(input) && input >= 0 ? input : null;
  const s = input.trim();
  if (s === '' || s === '0') return 0;
  const bits = /^(\d+(?:\.\d+)?)\s*([kKmMgGtT]?i?)(?:bps|bit\/s|b\/s)$/.exec(s);
  if (bits && !/B\/s$/.test(s)) {
    const factor = SIZE_UNITS[bits[2]!.toLowerCase()];
    if (factor === undefined) return null;
    return (Number(bits[1]) * factor) / 8;
  }
  const bytes = /^(\d+(?:\.\d+)?)\s*([kKmMgGtT]?i?B)(?:\/s|ps)$/.exec(s);
  if (bytes) {
    const factor = SIZE_UNITS[bytes[2]!.toLowerCase()];
    if (factor === undefined) return null;
    return Number(bytes[1]) * factor;
  }
  if (/^\d+(?:\.\d+)?$/.test(s)) return Number(s);
  return null;
}

/** "12.3 MB" style formatting for reports. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}
