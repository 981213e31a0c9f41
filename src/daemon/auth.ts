// Secrets compared in constant time. Both sides are hashed first, so timingSafeEqual always sees two
// 32-byte buffers: neither the content nor the length of the expected value leaks through timing.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

export function safeEqual(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/**
 * Whether the request carries the API token: `Authorization: Bearer <token>`, or HTTP Basic with the
 * token as the password (any user name), which lets a browser open the status page.
 */
export function hasToken(req: IncomingMessage, token: string): boolean {
  const header = req.headers.authorization;
  if (!header) return false;
  const m = /^(\S+)\s+(.+)$/.exec(header.trim());
  if (!m) return false;
  const scheme = m[1]!.toLowerCase();
  if (scheme === 'bearer') return safeEqual(m[2]!.trim(), token);
  if (scheme === 'basic') {
    const decoded = Buffer.from(m[2]!.trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon >= 0 && safeEqual(decoded.slice(colon + 1), token);
  }
  return false;
}

/** Harbor's webhook policy sends its "Auth Header" verbatim as Authorization. */
export function hasWebhookAuth(req: IncomingMessage, expected: string): boolean {
  return safeEqual(req.headers.authorization ?? '', expected);
}
