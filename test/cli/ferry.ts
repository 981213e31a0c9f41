// The CLI from source, for tests: the same as bin/ferry.js, with src/ compiled on the fly by tsx so
// the tests never depend on a stale or missing dist/ (run it as `node --import tsx test/cli/ferry.ts`).
import { main } from '../../src/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  },
);
