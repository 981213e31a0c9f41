#!/usr/bin/env node
// Makes sure the Chromium that the daemon's status-page test drives (through playwright-core) is
// present: `npm test` runs this first. Present (the usual case): exit 0 at once, printing nothing.
// Missing: install the Debian package `chromium` with apt-get when running as root, telling stderr
// what it does. When it cannot be installed, say so and exit 0 so the rest of the suite runs and that
// one test skips with the same message, except on CI (CI=true), where it is an error: the test must run.
// FERRY_CHROMIUM points the test at another Chromium build. Plain Node, no dependencies.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

const DEFAULT_BIN = '/usr/bin/chromium';
const bin = process.env.FERRY_CHROMIUM || DEFAULT_BIN;
const onCI = process.env.CI === 'true' || process.env.CI === '1';

function isExecutable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function giveUp(message) {
  process.stderr.write(`ensure-chromium: ${message}\n`);
  if (onCI) {
    process.stderr.write('ensure-chromium: CI=true, so this is an error: the status page test must run on CI.\n');
    process.exit(1);
  }
  process.stderr.write('ensure-chromium: the status page browser test will be skipped.\n');
  process.exit(0);
}

if (isExecutable(bin)) process.exit(0);
if (bin !== DEFAULT_BIN) giveUp(`FERRY_CHROMIUM=${bin} is not an executable file.`);

const manual = 'Install it with:  sudo apt-get update && sudo apt-get install -y chromium   (or set FERRY_CHROMIUM to a Chromium binary)';
if (process.platform !== 'linux') giveUp(`${DEFAULT_BIN} not found. ${manual}`);
if (typeof process.getuid !== 'function' || process.getuid() !== 0) giveUp(`${DEFAULT_BIN} not found and not running as root, so not installing it. ${manual}`);
if (!isExecutable('/usr/bin/apt-get')) giveUp(`${DEFAULT_BIN} not found and apt-get is not available. ${manual}`);

// apt output goes to stderr: stdout of `npm test` stays the tests' own.
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
function run(args) {
  process.stderr.write(`ensure-chromium: ${DEFAULT_BIN} is missing; running: apt-get ${args.join(' ')}\n`);
  const r = spawnSync('apt-get', args, { stdio: ['ignore', 2, 2], env });
  if (r.error) giveUp(`apt-get could not start: ${r.error.message}`);
  if (r.status !== 0) giveUp(`apt-get ${args.join(' ')} failed with exit code ${r.status}. ${manual}`);
}
run(['update']);
run(['install', '-y', '--no-install-recommends', 'chromium']);

if (!isExecutable(DEFAULT_BIN)) giveUp(`apt-get reported success but ${DEFAULT_BIN} is still missing.`);
process.stderr.write(`ensure-chromium: installed ${DEFAULT_BIN}\n`);
