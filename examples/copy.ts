// Copy one image (all platforms, signatures and other referrers) with credentials from a config, and
// follow the run with the async iterator instead of listeners.
//
//   node --import tsx examples/copy.ts ferry.yaml harbor/library/nginx:1.27 tcr/prod/nginx
//
// A reference is REGISTRY/REPOSITORY[:TAG|@DIGEST], REGISTRY being a name from the config or a host;
// the destination tag defaults to the source's. In your project import from 'ferry'.
import { createFerry } from '../src/index.js';

const [configFile, source, destination] = process.argv.slice(2);
if (!configFile || !source || !destination) {
  console.error('usage: node --import tsx examples/copy.ts CONFIG.yaml SOURCE_REF DESTINATION_REF');
  process.exit(2);
}

// A one-off copy, like `ferry copy`: no state directory (so it can run beside a sync of the same config,
// which holds the state directory's lock).
const ferry = createFerry(configFile, { stateDir: false });
try {
  ferry.setBandwidth('100Mbps'); // whole process; change it at any time, copies in flight included
  const run = ferry.copy(source, destination);
  for await (const event of ferry.watch({ until: run })) {
    if (event.type === 'blob') console.error(`blob ${event.outcome} (${event.size} bytes)`);
    if (event.type === 'artifact') console.error(`${event.result.status} ${event.result.destination}:${event.result.tags.join(',')} ${event.result.digest ?? ''}`);
  }
  const report = await run;
  const result = report.rules[0]?.items[0];
  console.log(JSON.stringify({ status: report.status, digest: result?.digest, destination: result?.destination, tags: result?.tags }));
  process.exitCode = report.status === 'ok' ? 0 : 1;
} finally {
  await ferry.close();
}
