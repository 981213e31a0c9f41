// Free loopback ports for test servers.
//
// In-process servers (token issuer, proxies) should simply listen on port 0 and read the port back:
// that is race-free. Only child processes that need a port number *before* they start (the
// docker-registry binary reads it from its config file) need `getFreePort`, which has an unavoidable
// window between our close() and the child's bind(). Callers that spawn processes must therefore
// retry with a new port when the child reports "address already in use" (startRegistry does).
import { createServer, type AddressInfo, type Server } from 'node:net';

/** The loopback address every helper binds to (never 0.0.0.0: tests must not be reachable from outside). */
export const LOOPBACK = '127.0.0.1';

/**
 * Asks the kernel for a free TCP port on `host` by binding port 0, then releases it.
 * Ports handed out by this process are remembered so two calls in quick succession (e.g. two
 * registries started in parallel) never get the same number even if the kernel reuses it.
 */
export async function getFreePort(host: string = LOOPBACK): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await bindAndRelease(host);
    if (!recentlyIssued.has(port)) {
      remember(port);
      return port;
    }
  }
  // Extremely unlikely; the caller's retry-on-EADDRINUSE covers this anyway.
  return bindAndRelease(host);
}

/** The port a `net.Server`/`http.Server` is listening on (after `listen` completed). */
export function listeningPort(server: { address(): AddressInfo | string | null }): number {
  const address = server.address();
  if (address === null || typeof address === 'string') {
    throw new Error(`server is not listening on a TCP port (address: ${String(address)})`);
  }
  return address.port;
}

/**
 * Starts listening on `host:0` and resolves with the port; rejects on listen errors (e.g. when
 * `host` is not a local address) instead of emitting an unhandled 'error' event.
 *
 * The server is unref'd: like the registry processes, helper servers never keep a process alive by
 * themselves (a script that forgets stop() still exits; open connections do keep it alive).
 */
export function listenOnFreePort(server: Server, host: string = LOOPBACK): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = (): void => {
      server.off('error', onError);
      server.unref();
      resolve(listeningPort(server));
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(0, host);
  });
}

// A small memory of ports issued recently by this process (bounded, oldest evicted first).
const recentlyIssued = new Set<number>();
function remember(port: number): void {
  recentlyIssued.add(port);
  if (recentlyIssued.size > 256) {
    const oldest = recentlyIssued.values().next().value;
    if (oldest !== undefined) recentlyIssued.delete(oldest);
  }
}

function bindAndRelease(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, host, () => {
      const port = listeningPort(server);
      server.close(() => resolve(port));
    });
  });
}
