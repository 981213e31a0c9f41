#!/usr/bin/env -S node --max-semi-space-size=2 --max-old-space-size=512
// Thin launcher: the compiled CLI lives in dist/ (built by `npm run build`, which `npm ci` runs via `prepare`).
//
// The heap flags size V8 for what Ferry keeps: little that outlives a tag's copy (the live heap stays
// at 25-40 MB from 2k to 20k tags), allocated fast. By default V8 grows the young generation to 16 MB
// semi-spaces (33.6 MB) and lets the old generation reach 4x its live size between full collections
// on a machine with this much memory, so the peak RSS followed the collector's pacing, not the data:
// 2 MB semi-spaces and a 512 MB old-generation limit (which caps V8's growing factor near 1.4x, and
// stays below the 1Gi memory limit of deploy/kubernetes, so a runaway heap ends with V8's "heap out
// of memory" rather than the kernel's OOM kill) took the 2k full sync from 171-207 MB to ~120 MB
// without costing time (docs/benchmarks.md, "Heap").
// `env -S` passes them where the shebang is used (npm's bin link, the container image); run
// `node --max-old-space-size=<MB> bin/ferry.js` for a bigger heap. The benchmark reads this line
// (bench/ferry.ts nodeFlags), so it measures what users run.
import { main } from '../dist/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(err); process.exitCode = 1; },
);
