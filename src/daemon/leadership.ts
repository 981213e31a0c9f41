// Which daemon runs the schedules. One daemon on its own state (SQLite) always does; replicas on one
// PostgreSQL state.url elect one by advisory lock (state/pg-leader.ts), and the others take over when
// it dies. Every replica accepts webhooks and API calls and runs what it is asked itself.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

export interface Leadership {
  /** This daemon process's id: shown in the API, stored with the executions it runs. */
  readonly replica: string;
  /** Whether this daemon runs the schedules now. */
  readonly leader: boolean;
  /** Other daemons share the state (replicas on PostgreSQL). */
  readonly shared: boolean;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Whether another replica still runs (true when it cannot be told). */
  isAlive(replica: string): Promise<boolean>;
}

/** hostname-pid-random: unique per process, readable in logs (a pod's hostname is its name). */
export function newReplicaId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/** The only daemon on its state: the leader from start to stop. */
export class SoleLeadership implements Leadership {
  readonly shared = false;
  private running = false;

  constructor(
    readonly replica: string,
    private readonly onChange: (leader: boolean) => void,
  ) {}

  get leader(): boolean {
    return this.running;
  }

  async start(): Promise<void> {
    this.running = true;
    this.onChange(true);
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.onChange(false);
  }

  async isAlive(replica: string): Promise<boolean> {
    return replica === this.replica;
  }
}
