#!/usr/bin/env node
// Installs the pinned real clients (helm, cosign, oras, regctl/regsync, crane) and a second registry
// implementation (distribution v3) with `go install`, into a cache OUTSIDE the repository so that every
// run and every fresh clone on the machine (CI runs .ci/run in one) reuses the builds:
//
//   ${FERRY_TOOLS_DIR:-$HOME/.cache/ferry-tools}/<tool>@<version>/bin/<binary>
//   ${FERRY_TOOLS_DIR}/go/{path,cache,mod}      GOPATH, GOCACHE, GOMODCACHE of these builds
//
// Versions live in scripts/go-tools.json (with the reason for each). A tool whose binaries are all present
// is not rebuilt. Builds run one after another with `-p 2`: the machine has 2 cores.
//
//   node scripts/install-go-tools.mjs            install what is missing; exit 3 when Go is not installed
//   node scripts/install-go-tools.mjs --check    print the state of each tool, build nothing
//   node scripts/install-go-tools.mjs helm crane only these tools
//
// Plain Node, no dependencies. Output goes to stderr; stdout stays empty.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, closeSync, constants, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = dirname(here);
const table = JSON.parse(readFileSync(join(here, 'go-tools.json'), 'utf8'));

export const toolsDir = process.env.FERRY_TOOLS_DIR || join(homedir(), '.cache', 'ferry-tools');

/** The go binary: GO (env) when set, else `go` on PATH, else /usr/local/go/bin/go; undefined when none runs. */
export function findGo() {
  const candidates = process.env.GO ? [process.env.GO] : ['go', '/usr/local/go/bin/go'];
  for (const candidate of candidates) {
    const r = spawnSync(candidate, ['version'], { encoding: 'utf8' });
    if (r.status === 0) return { bin: candidate, version: r.stdout.trim() };
  }
  return undefined;
}

function log(line) {
  process.stderr.write(`install-go-tools: ${line}\n`);
}

function isExecutable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * A tool built from this repository (`dir`) is versioned by the hash of its sources, so a change to them
 * builds a new binary; test/interop/tools.ts computes the same.
 */
export function toolVersion(tool) {
  if (!tool.dir) return tool.version;
  const hash = createHash('sha256');
  for (const file of ['go.mod', 'go.sum', 'main.go']) hash.update(readFileSync(join(repoRoot, tool.dir, file)));
  return `src-${hash.digest('hex').slice(0, 12)}`;
}

function binDir(tool) {
  return join(toolsDir, `${tool.name}@${toolVersion(tool)}`, 'bin');
}

function installed(tool) {
  return tool.bins.every((b) => isExecutable(join(binDir(tool), b)));
}

function install(go, tool) {
  const goRoot = join(toolsDir, 'go');
  const finalBin = binDir(tool);
  // Build into a scratch directory and rename: a build cut short never leaves a half set of binaries
  // that a later run would take for installed.
  const scratch = `${finalBin}.partial`;
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  const env = {
    ...process.env,
    GOBIN: scratch,
    GOPATH: join(goRoot, 'path'),
    GOCACHE: join(goRoot, 'cache'),
    GOMODCACHE: join(goRoot, 'mod'),
    GOFLAGS: process.env.FERRY_GOFLAGS ?? '-p=2 -trimpath',
    GOTOOLCHAIN: process.env.GOTOOLCHAIN ?? 'local',
    CGO_ENABLED: tool.cgo ? '1' : '0',
  };
  const tags = tool.tags ? ['-tags', tool.tags] : [];
  // A module from the proxy: `go install module/pkg@version`. A program of this repository: `go install .`
  // in its directory, with its committed go.sum (-mod=readonly).
  const args = tool.dir
    ? ['install', '-mod=readonly', ...tags, '.']
    : ['install', ...tags, ...tool.package.split(/\s+/).map((p) => `${tool.module}/${p}@${tool.version}`)];
  const cwd = tool.dir ? join(repoRoot, tool.dir) : toolsDir;
  log(`${tool.name}: ${go.bin} ${args.join(' ')}${tool.dir ? ` (in ${tool.dir})` : ''}`);
  const started = Date.now();
  const r = spawnSync(go.bin, args, { stdio: ['ignore', 2, 2], env, cwd });
  if (r.status !== 0) {
    rmSync(scratch, { recursive: true, force: true });
    log(`${tool.name}: go install failed (exit ${r.status ?? r.signal})`);
    return false;
  }
  rmSync(finalBin, { recursive: true, force: true });
  renameSync(scratch, finalBin);
  log(`${tool.name}: built in ${Math.round((Date.now() - started) / 1000)} s -> ${finalBin}`);
  return true;
}

/**
 * One installer at a time per cache (two clones, or CI next to a developer's run, would build into the
 * same directories): an exclusive lock file holding our pid; a lock whose process is gone is taken over.
 */
function lock() {
  const path = join(toolsDir, '.install.lock');
  let waitingSince;
  for (;;) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      const release = () => rmSync(path, { force: true });
      process.on('exit', release);
      for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130));
      return;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
    }
    const holder = Number(readFileSync(path, 'utf8')) || 0;
    let alive = false;
    try {
      if (holder > 0) process.kill(holder, 0);
      alive = holder > 0;
    } catch {
      alive = false;
    }
    if (!alive) {
      rmSync(path, { force: true });
      continue;
    }
    if (waitingSince === undefined) {
      waitingSince = Date.now();
      log(`another install (pid ${holder}) is building into ${toolsDir}; waiting for it`);
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2000);
  }
}

function main() {
  const args = process.argv.slice(2);
  const check = args.includes('--check');
  const wanted = args.filter((a) => !a.startsWith('--'));
  const unknown = wanted.filter((w) => !table.tools.some((t) => t.name === w));
  if (unknown.length) {
    log(`unknown tool(s): ${unknown.join(', ')}; known: ${table.tools.map((t) => t.name).join(', ')}`);
    process.exit(2);
  }
  const tools = table.tools.filter((t) => wanted.length === 0 || wanted.includes(t.name));
  if (check) {
    for (const t of tools) log(`${t.name}@${toolVersion(t)}: ${installed(t) ? 'installed' : 'missing'} (${binDir(t)})`);
    process.exit(tools.every(installed) ? 0 : 1);
  }
  const go = findGo();
  if (!go) {
    log(`Go is not installed (${process.env.GO ? `GO=${process.env.GO} does not run` : 'no `go` on PATH, none at /usr/local/go/bin/go'}): nothing built.`);
    process.exit(3);
  }
  mkdirSync(toolsDir, { recursive: true });
  lock();
  let failed = 0;
  for (const tool of tools) {
    if (installed(tool)) continue;
    if (!install(go, tool)) failed++;
  }
  if (failed) {
    log(`${failed} tool(s) failed to build`);
    process.exit(1);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main();
