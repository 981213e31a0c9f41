// A child process for the state tests: opens the state in argv[2], optionally records a blob
// (argv[3] = digest), prints "ready" once the write is durable, then waits to be killed.
import { SqliteState } from '../../src/state/sqlite.js';

const state = SqliteState.open(process.argv[2]!);
const digest = process.argv[3];
if (digest) await state.recordBlob('d@h', 'held/repo', digest, 42);
process.stdout.write('ready\n');
setInterval(() => undefined, 1000);
