// Placeholder until the daemon lands (issue 6).
import type { Logger } from 'pino';

export async function runDaemon(_opts: { configFile: string; stateDir?: string | undefined; logger: Logger }): Promise<number> {
  throw new Error('ferry daemon is not implemented yet');
}
