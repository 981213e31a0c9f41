// Run every rule of a config (or the named ones) from your own program, with progress and per-artifact
// events, and exit like `ferry sync`: 0 all copied or present, 1 some artifacts failed.
//
//   node --import tsx examples/sync.ts ferry.yaml [RULE...]
//
// In your project: `npm install ferry` and import from 'ferry' instead of '../src/index.js'.
import { createFerry, formatProgressLine, formatTextReport } from '../src/index.js';

const [configFile, ...rules] = process.argv.slice(2);
if (!configFile) {
  console.error('usage: node --import tsx examples/sync.ts CONFIG.yaml [RULE...]');
  process.exit(2);
}

// Throws ConfigError (file + key path of each problem) when the config is invalid.
const ferry = createFerry(configFile, { progressIntervalMs: 5000 });

ferry.events.on('planned', (rule, artifacts) => console.error(`${rule}: ${artifacts} artifact(s) to copy`));
ferry.events.on('artifact', (result, rule) => {
  const why = result.reason ? ` (${result.reason})` : '';
  console.error(`${rule}: ${result.status} ${result.source} -> ${result.destination}${why}`);
});
ferry.events.on('progress', (snapshot) => console.error(formatProgressLine(snapshot)));

// Ctrl-C: stop taking new work, let copies in flight finish; a second Ctrl-C aborts them.
const stop = new AbortController();
const abort = new AbortController();
process.on('SIGINT', () => (stop.signal.aborted ? abort : stop).abort());

try {
  const report = await ferry.sync(rules.length ? rules : undefined, { stop: stop.signal, signal: abort.signal });
  process.stdout.write(formatTextReport(report));
  process.exitCode = report.status === 'ok' ? 0 : 1;
} finally {
  await ferry.close();
}
