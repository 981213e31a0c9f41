// startWanProxy: a TCP-level link emulator (one-way delay + shared bandwidth cap) in front of a
// registry, for benchmarks.
import { connect as netConnect, createServer as createNetServer, type Socket } from 'node:net';
import { LOOPBACK, listenOnFreePort } from './ports.js';

export interface WanOptions {
  /** Added to every chunk in each direction (RTT = 2x this). */
  oneWayDelayMs: number;
  /** Shared by all connections, per direction (a full-duplex link). 0 or Infinity = unlimited. */
  bandwidthBytesPerSec: number;
}

export interface WanProxy {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Live settings (changes apply to data arriving afterwards). */
  options: WanOptions;
  /** Client → target bytes delivered. */
  readonly bytesUp: number;
  /** Target → client bytes delivered. */
  readonly bytesDown: number;
  /** Connections accepted so far. */
  readonly connections: number;
  stop(): Promise<void>;
}

/**
 * A link emulator at the TCP level. Each direction is a FIFO "wire": a chunk may start transmitting
 * when the previous one (from any connection) finished, takes size/bandwidth to transmit, and
 * arrives oneWayDelay later. Each connection-direction keeps a queue served by ONE timer at a time
 * (the head's delivery time), so cost is per chunk, never per byte. When too much is in flight the
 * sending socket is paused, so memory stays bounded and TCP back-pressure reaches the sender.
 *
 * Not emulated: the handshake RTT (the proxy accepts locally, then connects to the target at once)
 * and loss; a benchmark that wants connection-setup cost should count it separately.
 */
export async function startWanProxy(target: { host: string; port: number }, options: WanOptions): Promise<WanProxy> {
  const state = { bytesUp: 0, bytesDown: 0, connections: 0 };
  let opts = { ...options };
  // Virtual time at which each direction's wire is free again (shared by all connections).
  const wire = { up: 0, down: 0 };
  const sockets = new Set<Socket>();

  // allowHalfOpen on both sides: a FIN must travel with the same delay as the data before it, so
  // neither socket may end (or be destroyed) by itself when its peer ends; pipeDelayed forwards the
  // end in order. Errors, on the other hand, tear down both sides at once.
  const server = createNetServer({ allowHalfOpen: true }, (client) => {
    state.connections++;
    const upstream = netConnect({ host: target.host, port: target.port, allowHalfOpen: true });
    sockets.add(client);
    sockets.add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const kill = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', kill);
    upstream.on('error', kill);
    client.on('close', () => sockets.delete(client));
    upstream.on('close', () => sockets.delete(upstream));
    pipeDelayed(client, upstream, 'up');
    pipeDelayed(upstream, client, 'down');
  });

  const MAX_SLICE = 16 * 1024; // smooths pacing of large reads without per-byte work
  const HIGH_WATER = 1024 * 1024; // bytes queued per connection-direction before pausing the source

  function pipeDelayed(from: Socket, to: Socket, dir: 'up' | 'down'): void {
    const queue: { at: number; chunk: Buffer | null }[] = [];
    let queued = 0;
    let timer: NodeJS.Timeout | undefined;

    const schedule = (): void => {
      if (timer !== undefined || queue.length === 0) return;
      const wait = Math.max(0, (queue[0]?.at ?? 0) - performance.now());
      timer = setTimeout(flush, wait);
    };
    const flush = (): void => {
      timer = undefined;
      const now = performance.now();
      while (queue.length > 0 && (queue[0]?.at ?? Infinity) <= now + 1) {
        const item = queue.shift();
        if (item === undefined) break;
        if (item.chunk === null) {
          to.end();
          continue;
        }
        queued -= item.chunk.length;
        if (dir === 'up') state.bytesUp += item.chunk.length;
        else state.bytesDown += item.chunk.length;
        if (!to.destroyed) to.write(item.chunk);
      }
      maybeResume();
      schedule();
    };
    // Resume the sender only when both our queue and the receiver's socket buffer have room.
    const maybeResume = (): void => {
      if (from.isPaused() && queued + to.writableLength < HIGH_WATER / 2) from.resume();
    };
    to.on('drain', maybeResume);

    from.on('data', (data: Buffer) => {
      const bw = opts.bandwidthBytesPerSec;
      for (let off = 0; off < data.length; off += MAX_SLICE) {
        const chunk = data.subarray(off, Math.min(off + MAX_SLICE, data.length));
        const now = performance.now();
        let sentAt = now;
        if (bw > 0 && Number.isFinite(bw)) {
          const start = Math.max(now, wire[dir]);
          wire[dir] = start + (chunk.length / bw) * 1000;
          sentAt = wire[dir];
        }
        queue.push({ at: sentAt + opts.oneWayDelayMs, chunk });
        queued += chunk.length;
      }
      if (queued + to.writableLength > HIGH_WATER) from.pause();
      schedule();
    });
    // Half-close travels with the same delay, after the data queued before it.
    from.on('end', () => {
      const last = queue.length > 0 ? (queue[queue.length - 1]?.at ?? 0) : 0;
      queue.push({ at: Math.max(last, performance.now() + opts.oneWayDelayMs), chunk: null });
      schedule();
    });
    to.on('close', () => {
      // Nothing left to deliver to: drop the queue and its timer.
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      queue.length = 0;
      queued = 0;
    });
  }

  const port = await listenOnFreePort(server);
  return {
    url: `http://${LOOPBACK}:${port}`,
    host: `${LOOPBACK}:${port}`,
    port,
    get options() {
      return opts;
    },
    set options(o: WanOptions) {
      opts = { ...o };
    },
    get bytesUp() {
      return state.bytesUp;
    },
    get bytesDown() {
      return state.bytesDown;
    },
    get connections() {
      return state.connections;
    },
    stop() {
      return new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      });
    },
  };
}
