#!/usr/bin/env node
// `npm run test:interop`: builds (once, into a cache outside the repository) the pinned real clients and
// registries with scripts/install-go-tools.mjs, then runs test/interop with vitest.interop.config.ts.
// Without Go it says so and exits 0 having run no test: the interop stage is skipped, not passed.
// Extra arguments go to vitest (e.g. `npm run test:interop -- test/interop/helm.test.ts`).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const node = process.execPath;

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

const install = run(node, [join(root, 'scripts', 'install-go-tools.mjs')]);
if (install === 3) {
  console.log('test:interop: SKIPPED, Go is not installed (no `go` on PATH or at /usr/local/go/bin/go): no interop test was run.');
  process.exit(0);
}
if (install !== 0) {
  console.error('test:interop: building the tools failed (see above)');
  process.exit(install);
}
if (run(node, [join(root, 'scripts', 'ensure-registry.mjs')]) !== 0) process.exit(1);
process.exit(run(node, [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--config', 'vitest.interop.config.ts', ...process.argv.slice(2)]));
