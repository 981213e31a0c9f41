#!/usr/bin/env node
// Makes sure the registry binary the integration tests start is present: `npm test` runs this first.
//
// Present (the usual case): exit 0 at once, printing nothing. Missing: install the Debian package
// docker-registry (distribution 2.8) with apt-get when running as root, telling stderr what it does;
// otherwise exit 1 with the command to run. FERRY_REGISTRY_BIN points the tests at another build of
// distribution 2.x (e.g. on macOS: `brew install distribution`, FERRY_REGISTRY_BIN=$(which registry)).
// Plain Node, no dependencies: it runs before anything is compiled.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

const DEFAULT_BIN = '/usr/bin/docker-registry';
const bin = process.env.FERRY_REGISTRY_BIN || DEFAULT_BIN;

function isExecutable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function fail(message) {
  process.stderr.write(`ensure-registry: ${message}\n`);
  process.exit(1);
}

if (isExecutable(bin)) process.exit(0);

if (bin !== DEFAULT_BIN) fail(`FERRY_REGISTRY_BIN=${bin} is not an executable file.`);

const manual =
  'The integration tests need the registry binary from the Debian/Ubuntu package "docker-registry" (distribution 2.8).\n' +
  '  Install it with:  sudo apt-get update && sudo apt-get install -y docker-registry\n' +
  '  or point FERRY_REGISTRY_BIN at a distribution 2.x "registry" binary.';

if (process.platform !== 'linux') fail(`${DEFAULT_BIN} not found.\n${manual}`);
if (typeof process.getuid !== 'function' || process.getuid() !== 0) fail(`${DEFAULT_BIN} not found and not running as root, so not installing it.\n${manual}`);
if (!isExecutable('/usr/bin/apt-get')) fail(`${DEFAULT_BIN} not found and apt-get is not available on this system.\n${manual}`);

// Output of apt goes to stderr: stdout of `npm test` stays the tests' own.
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
function run(args) {
  process.stderr.write(`ensure-registry: ${DEFAULT_BIN} is missing; running: apt-get ${args.join(' ')}\n`);
  const r = spawnSync('apt-get', args, { stdio: ['ignore', 2, 2], env });
  if (r.error) fail(`apt-get could not start: ${r.error.message}`);
  if (r.status !== 0) fail(`apt-get ${args.join(' ')} failed with exit code ${r.status}.\n${manual}`);
}
run(['update']);
// --no-install-recommends: only the binary is needed, not the service's extras.
run(['install', '-y', '--no-install-recommends', 'docker-registry']);

if (!isExecutable(DEFAULT_BIN)) fail(`apt-get reported success but ${DEFAULT_BIN} is still missing.`);
process.stderr.write(`ensure-registry: installed ${DEFAULT_BIN}\n`);
