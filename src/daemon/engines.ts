// The daemon's engines. One is current; a config reload makes a new one current while runs that
// started on the old one finish there, after which the old one is closed. All engines share one event
// emitter (metrics, live view), and the bandwidth cap set through the API applies to all of them.
import type { EventEmitter } from 'node:events';
import type { FerryConfig } from '../config/schema.js';
import type { Engine } from '../engine/engine.js';
import type { Logger } from '../log.js';
import type { TransferEvents } from '../transfer/stats.js';

/**
 * What the daemon uses of an Engine (tests substitute fakes). `resetRunCaches` drops what one run
 * remembers (the blob copier's dedup maps); the pool calls it, and clears the registry clients'
 * tokens, whenever no run is using the engine, so a long-lived daemon does not grow them without end.
 * Optional: the caches' owner implements it on Engine.
 */
export type EngineLike = Pick<Engine, 'config' | 'sync' | 'plan' | 'provider' | 'state' | 'setBandwidth' | 'preflight' | 'close'> & {
  resetRunCaches?: () => void;
};

export type EngineFactory = (config: FerryConfig, events: EventEmitter<TransferEvents>) => EngineLike;

interface Slot {
  engine: EngineLike;
  users: number;
  retired: boolean;
}

export class EnginePool {
  private current: Slot;
  private readonly slots = new Set<Slot>();
  private bandwidthOverride: number | undefined;

  constructor(
    config: FerryConfig,
    private readonly factory: EngineFactory,
    private readonly events: EventEmitter<TransferEvents>,
    private readonly logger: Logger,
  ) {
    this.current = this.create(config);
  }

  get engine(): EngineLike {
    return this.current.engine;
  }

  get config(): FerryConfig {
    return this.current.engine.config;
  }

  /** The process bandwidth cap in bytes/s (0 = unlimited): the API's override, else the config's. */
  get bandwidth(): number {
    return this.bandwidthOverride ?? this.config.transfer.bandwidth;
  }

  /** Borrows the current engine for one run; call `release` when the run is over. */
  acquire(): { engine: EngineLike; release: () => void } {
    const slot = this.current;
    slot.users++;
    let released = false;
    return {
      engine: slot.engine,
      release: () => {
        if (released) return;
        released = true;
        slot.users--;
        // Runs that overlap share the caches (a blob copied by one is not sent again by the other);
        // once none is left, the next run starts with empty ones.
        if (slot.users === 0 && !slot.retired) this.resetCaches(slot);
        this.closeIfIdle(slot);
      },
    };
  }

  /** Makes an engine for `config` current; the previous one is closed once its runs are over. */
  replace(config: FerryConfig): void {
    const old = this.current;
    // A reload puts the config's bandwidth back in force.
    this.bandwidthOverride = undefined;
    this.current = this.create(config);
    old.retired = true;
    this.closeIfIdle(old);
  }

  /** Changes the cap of every engine, running transfers included, until the next reload. */
  setBandwidth(bytesPerSecond: number): void {
    this.bandwidthOverride = bytesPerSecond;
    for (const slot of this.slots) slot.engine.setBandwidth(bytesPerSecond);
  }

  async close(): Promise<void> {
    const all = [...this.slots];
    this.slots.clear();
    await Promise.all(all.map((s) => s.engine.close().catch((err: unknown) => this.logger.warn({ err: (err as Error).message }, 'closing engine failed'))));
  }

  private create(config: FerryConfig): Slot {
    const slot: Slot = { engine: this.factory(config, this.events), users: 0, retired: false };
    this.slots.add(slot);
    return slot;
  }

  private resetCaches(slot: Slot): void {
    const engine = slot.engine;
    try {
      engine.resetRunCaches?.();
      // Registry tokens too (the request layer also bounds them): the next run asks for fresh ones.
      for (const name of new Set(engine.config.rules.flatMap((r) => [r.source, r.destination]))) engine.provider(name).client.clearTokens();
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'resetting the engine caches failed');
    }
  }

  private closeIfIdle(slot: Slot): void {
    if (!slot.retired || slot.users > 0 || !this.slots.has(slot)) return;
    this.slots.delete(slot);
    slot.engine.close().catch((err: unknown) => this.logger.warn({ err: (err as Error).message }, 'closing the previous engine failed'));
  }
}
