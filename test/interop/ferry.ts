// Runs Ferry's engine for an interop test: one rule from `src` to `dst`, no state directory.
import { parseConfig } from '../../src/config/load.js';
import { Engine } from '../../src/engine/engine.js';
import { formatTextReport } from '../../src/engine/report.js';

export interface Endpoint {
  url: string;
  username?: string | undefined;
  password?: string | undefined;
}

function registry(e: Endpoint, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { url: e.url, ...(e.username ? { username: e.username, password: e.password } : {}), ...extra };
}

export interface SyncOptions {
  /** Extra keys of the rule (filters, platforms, destinationNamespace, …). */
  rule?: Record<string, unknown>;
  /** Extra keys of `transfer` (chunkSize, …). */
  transfer?: Record<string, unknown>;
  /** Extra keys of the source registry (kind: 'harbor', …). */
  sourceExtra?: Record<string, unknown>;
}

export async function ferrySync(source: Endpoint, destination: Endpoint, opts: SyncOptions = {}) {
  const engine = new Engine(
    parseConfig({
      registries: { src: registry(source, opts.sourceExtra), dst: registry(destination) },
      transfer: { concurrency: 4, retries: 1, ...opts.transfer },
      rules: [{ name: 'interop', source: 'src', destination: 'dst', ...opts.rule }],
    }),
    { stateDir: false },
  );
  try {
    const report = await engine.sync();
    return { report, text: formatTextReport(report) };
  } finally {
    await engine.close();
  }
}
