// A daemon replica in a process of its own, for the replica tests (replicas.test.ts): a Daemon with
// fake engines whose runs never finish, on the PostgreSQL state in argv[2], replica id argv[3]. Prints
// its URL once listening, then waits to be killed (SIGKILL: its session, and so its locks, end).
import { Daemon } from '../../src/daemon/service.js';
import { fakeEngines, sharedDaemonConfig } from './fakes.js';

const [url, replica, retry] = process.argv.slice(2);
const fakes = fakeEngines();
const config = sharedDaemonConfig(url!, [{ name: 'r' }]);
const daemon = new Daemon({ config, createEngine: fakes.factory, replica, leaderRetryMs: Number(retry) });
await daemon.start();
process.stdout.write(`${JSON.stringify({ url: daemon.url, leader: daemon.leader })}\n`);
setInterval(() => undefined, 1000);
