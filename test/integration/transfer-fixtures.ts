// Small shared pieces of the transfer integration tests (chunked, resume, faults, kill): config
// building, polling, and reading the state database. Registries and proxies come from test/helpers.
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/load.js';
import type { FerryConfig } from '../../src/config/schema.js';
import Database from 'better-sqlite3';

export interface ConfigParts {
  source: { url: string; username?: string | undefined; password?: string | undefined };
  destination: { url: string; username?: string | undefined; password?: string | undefined };
  transfer?: Record<string, unknown>;
  rule?: Record<string, unknown>;
}

function registry(r: ConfigParts['source']): Record<string, unknown> {
  return { url: r.url, ...(r.username !== undefined ? { username: r.username, password: r.password } : {}) };
}

/** One rule `r` from `src` to `dst`. Transfer defaults suit tests: few retries, quick timeouts. */
export function transferConfig(parts: ConfigParts): FerryConfig {
  return parseConfig({
    registries: { src: registry(parts.source), dst: registry(parts.destination) },
    transfer: { concurrency: 4, retries: 2, requestTimeout: 10, ...parts.transfer },
    rules: [{ name: 'r', source: 'src', destination: 'dst', ...parts.rule }],
  });
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Polls `check` every 10 ms until it returns true; throws after `timeoutMs`. */
export async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Request body bytes the proxy forwarded for blob uploads (PATCH/PUT bodies of /blobs/uploads/). */
export function uploadRequests(requests: { method: string; path: string }[]): { method: string; path: string }[] {
  return requests.filter((r) => (r.method === 'PATCH' || r.method === 'PUT') && /\/blobs\/uploads\//.test(r.path));
}

/**
 * The upload checkpoint the state database in `stateDir` holds for a blob, read through a read-only
 * connection of its own (works while a process writes: WAL); any repository when `repository` is undefined.
 */
export function readCheckpoint(stateDir: string, repository: string | undefined, digest: string): { location: string; offset: number } | undefined {
  const file = join(stateDir, 'ferry.db');
  if (!existsSync(file)) return undefined;
  const db = new Database(file, { readonly: true });
  try {
    db.pragma('busy_timeout = 2000');
    const row =
      repository === undefined
        ? db.prepare('SELECT location, offset FROM upload_view WHERE digest = ? ORDER BY offset DESC LIMIT 1').get(digest)
        : db.prepare('SELECT location, offset FROM upload_view WHERE repository = ? AND digest = ?').get(repository, digest);
    return row as { location: string; offset: number } | undefined;
  } finally {
    db.close();
  }
}
