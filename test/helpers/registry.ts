// Real registries for integration tests: the Debian `docker-registry` binary (distribution 2.8) on a
// free loopback port with a throw-away filesystem storage directory, with no auth, htpasswd (Basic)
// auth, or token auth backed by our in-process TokenIssuer.
//
// Why a real binary rather than a fake: Ferry's value is in the protocol details (upload sessions,
// digests, challenges, mounts), and a hand-written fake would only encode our own reading of the spec.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants as fsConstants, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { LOOPBACK, getFreePort } from './ports.js';
import { startTokenIssuer, type TokenIssuer, type UserAccess } from './token-issuer.js';

export type RegistryAuth = 'none' | 'basic' | 'token';

export interface RegistryUser {
  username: string;
  password: string;
  /** Token mode only: actions granted, default ['pull', 'push', 'delete', '*'] (or a per-resource function). */
  access?: UserAccess;
}

export interface StartRegistryOptions {
  /** Default 'none'. */
  auth?: RegistryAuth;
  /** Default [{ username: 'ferry', password: 's3cret' }] (basic and token modes). */
  users?: RegistryUser[];
  /** Token mode: lifetime of issued tokens (see TokenIssuer.compensateRegistryLeeway). */
  tokenTtlSeconds?: number;
  /** Token mode: use this issuer (e.g. shared by two registries) instead of starting one; it is not stopped by stop(). */
  issuer?: TokenIssuer;
  /**
   * Accept Docker schema 1 manifest pushes (`compatibility.schema1.enabled`). distribution 2.8 refuses
   * them by default with MANIFEST_INVALID ("schema1 manifest not supported").
   */
  schema1?: boolean;
  /** Reuse a storage directory (e.g. to restart a registry over the same data); it is not deleted by stop(). */
  storageDir?: string;
  /** Listen on this port instead of a free one (e.g. to bring a registry back at the same address). */
  port?: number;
  /** Deep-merged into the generated distribution config (e.g. { notifications: ... } or { proxy: { remoteurl } }). */
  extraConfig?: Record<string, unknown>;
  /** Milliseconds to wait for GET /v2/ to answer. Default 15000. */
  startTimeoutMs?: number;
  /**
   * Another distribution binary taking the same config (e.g. distribution v3 built by
   * scripts/install-go-tools.mjs for test/interop); default registryBinary().
   */
  binary?: string;
}

export interface TestRegistry {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  /** 127.0.0.1:PORT */
  readonly host: string;
  readonly port: number;
  readonly storageDir: string;
  readonly auth: RegistryAuth;
  /** The first user's credentials (undefined when auth is 'none'): handy for pushImage(reg, ...). */
  readonly username?: string;
  readonly password?: string;
  readonly users: readonly RegistryUser[];
  /** Token mode: the issuer whose certificate the registry trusts. */
  readonly issuer?: TokenIssuer;
  /** The process id of the running registry (changes after restart()). */
  readonly pid: number | undefined;
  /** The last ~64 KiB the registry wrote (stderr and stdout), for debugging failed tests. */
  logs(): string;
  /** Stops the process and starts it again at the same port over the same storage. */
  restart(): Promise<void>;
  /** Kills the registry (and the issuer we started) and deletes the temporary directories. */
  stop(): Promise<void>;
}

export const DEFAULT_USERS: readonly RegistryUser[] = [{ username: 'ferry', password: 's3cret' }];

/**
 * Where the binary lives; FERRY_REGISTRY_BIN lets developers on other systems point at their own
 * distribution 2.x build (e.g. `registry` from Homebrew).
 */
export function registryBinary(): string {
  return process.env.FERRY_REGISTRY_BIN ?? '/usr/bin/docker-registry';
}

export async function startRegistry(opts: StartRegistryOptions = {}): Promise<TestRegistry> {
  const auth = opts.auth ?? 'none';
  const users = opts.users ?? DEFAULT_USERS;
  const bin = opts.binary ?? registryBinary();
  try {
    if (!useDocker()) accessSync(bin, fsConstants.X_OK);
  } catch {
    throw new Error(`${bin} not found or not executable: run \`node scripts/ensure-registry.mjs\` (installs the Debian package docker-registry) or set FERRY_REGISTRY_BIN`);
  }

  // One temp dir per registry: config, htpasswd, issuer certificate, and (unless given) the storage.
  sweepStaleDirsOnce();
  const workDir = mkdtempSync(join(tmpdir(), WORKDIR_PREFIX));
  tempDirs.add(workDir);
  writeFileSync(join(workDir, OWNER_FILE), String(process.pid));
  const storageDir = opts.storageDir ?? join(workDir, 'storage');
  await mkdir(storageDir, { recursive: true });

  let issuer: TokenIssuer | undefined;
  const ownIssuer = auth === 'token' && opts.issuer === undefined;
  const cleanupOnFailure = async (): Promise<void> => {
    if (ownIssuer) await issuer?.stop();
    removeDir(workDir);
  };

  try {
    const config: Record<string, unknown> = {
      version: '0.1',
      // warn: the registry is chatty at info (one line per request); errors still reach logs().
      log: { level: 'warn', formatter: 'text', accesslog: { disabled: true } },
      storage: {
        filesystem: { rootdirectory: storageDir },
        delete: { enabled: true },
        // No background goroutine deleting "stale" uploads while a test pauses an upload session.
        maintenance: { uploadpurging: { enabled: false } },
      },
      http: {
        addr: '', // filled per attempt
        // A fixed secret: without it each start generates one and upload-session state (the _state
        // HMAC in Location URLs) would not survive restart().
        secret: randomBytes(16).toString('hex'),
        headers: { 'X-Content-Type-Options': ['nosniff'] },
      },
    };
    if (opts.schema1) config.compatibility = { schema1: { enabled: true } };

    if (auth === 'basic') {
      const htpasswdPath = join(workDir, 'htpasswd');
      // Cost 4 (bcrypt's minimum): distribution runs bcrypt on *every* request carrying Basic
      // credentials, and at the default cost 10 that is ~60 ms per request on a small CI machine.
      const lines = users.map((u) => `${u.username}:${bcrypt.hashSync(u.password, 4)}`);
      await writeFile(htpasswdPath, lines.join('\n') + '\n', { mode: 0o600 });
      config.auth = { htpasswd: { realm: 'ferry-test-registry', path: htpasswdPath } };
    } else if (auth === 'token') {
      issuer = opts.issuer ?? (await startTokenIssuer({ users: [...users], tokenTtlSeconds: opts.tokenTtlSeconds }));
      const certPath = join(workDir, 'token-issuer.pem');
      await writeFile(certPath, issuer.certificatePem);
      config.auth = { token: { realm: issuer.realm, service: issuer.service, issuer: issuer.issuer, rootcertbundle: certPath } };
    }
    if (opts.extraConfig) deepMerge(config, opts.extraConfig);

    const configPath = join(workDir, 'config.yml');
    const proc = useDocker()
      ? new (await import('./registry-docker.js')).DockerRegistryProcess(configPath, config, opts.startTimeoutMs ?? 120_000)
      : new RegistryProcess(bin, configPath, config, opts.startTimeoutMs ?? 15_000);
    await proc.start(opts.port);
    const port = proc.port;
    const first = auth === 'none' ? undefined : users[0];

    const registry: TestRegistry = {
      url: `http://${proc.hostname}:${port}`,
      host: `${proc.hostname}:${port}`,
      port,
      storageDir,
      auth,
      username: first?.username,
      password: first?.password,
      users,
      issuer,
      get pid() {
        return proc.pid;
      },
      logs: () => proc.output(),
      restart: async () => {
        await proc.kill();
        await proc.start(port);
      },
      stop: async () => {
        await proc.kill();
        if (ownIssuer) await issuer?.stop();
        // A caller-provided storageDir lives outside workDir and survives this.
        removeDir(workDir);
      },
    };
    return registry;
  } catch (err) {
    await cleanupOnFailure();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// FERRY_TEST_DOCKER=1: the same registries as `registry:2` containers via testcontainers
// (registry-docker.ts, imported only on that path); same config, same TestRegistry.

export function useDocker(): boolean {
  return process.env.FERRY_TEST_DOCKER === '1';
}

/** Starts several registries in parallel (e.g. a source and a destination). */
export function startRegistries(...opts: StartRegistryOptions[]): Promise<TestRegistry[]> {
  return Promise.all(opts.map((o) => startRegistry(o)));
}

// ---------------------------------------------------------------------------------------------

const MAX_LOG = 64 * 1024;

class RegistryProcess {
  private child: ChildProcess | undefined;
  private log = '';
  port = 0;
  readonly hostname = LOOPBACK;

  constructor(
    private readonly bin: string,
    private readonly configPath: string,
    private readonly config: Record<string, unknown>,
    private readonly timeoutMs: number,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  output(): string {
    return this.log;
  }

  async start(fixedPort?: number): Promise<void> {
    // getFreePort has a small race (another process may bind the port before the registry does);
    // retry with a new port when that happens, unless the caller insisted on a port.
    const attempts = fixedPort === undefined ? 4 : 1;
    let lastError: unknown;
    for (let i = 0; i < attempts; i++) {
      const port = fixedPort ?? (await getFreePort());
      try {
        await this.startOnce(port);
        this.port = port;
        return;
      } catch (err) {
        lastError = err;
        if (!(err instanceof Error && /address already in use/i.test(err.message))) throw err;
      }
    }
    throw lastError;
  }

  private async startOnce(port: number): Promise<void> {
    (this.config.http as { addr: string }).addr = `${LOOPBACK}:${port}`;
    // distribution's config parser is YAML 1.1, which accepts JSON: no YAML writer needed.
    await writeFile(this.configPath, JSON.stringify(this.config, null, 2));
    this.log = '';

    // REGISTRY_* variables override the config file in distribution; never inherit them.
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('REGISTRY_')) env[k] = v;
    // setpriv --pdeathsig: the kernel kills the registry if this Node process dies without running
    // its exit handlers (SIGKILL, OOM, a crashed vitest worker), so no orphan keeps a port busy.
    const [cmd, args] = existsSync(SETPRIV) ? [SETPRIV, ['--pdeathsig', 'KILL', '--', this.bin, 'serve', this.configPath]] : [this.bin, ['serve', this.configPath]];
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    this.child = child;
    liveChildren.add(child);
    installExitHandlers();
    const append = (chunk: Buffer): void => {
      this.log += chunk.toString('utf8');
      if (this.log.length > MAX_LOG) this.log = this.log.slice(-MAX_LOG);
    };
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
    // Child's stdio pipes must not keep the test process alive.
    child.unref();
    (child.stdout as unknown as { unref?: () => void } | null)?.unref?.();
    (child.stderr as unknown as { unref?: () => void } | null)?.unref?.();

    const exited = new Promise<never>((_, reject) => {
      child.once('exit', (code, signal) => {
        liveChildren.delete(child);
        reject(new Error(`docker-registry exited during start-up (code ${code}, signal ${signal}) on ${LOOPBACK}:${port}:\n${this.log.trim()}`));
      });
      child.once('error', (err) => {
        liveChildren.delete(child);
        reject(new Error(`could not spawn ${this.bin}: ${err.message}`));
      });
    });
    exited.catch(() => undefined); // handled via the race below

    try {
      await Promise.race([waitForV2(`http://${LOOPBACK}:${port}/v2/`, this.timeoutMs, () => this.log), exited]);
    } catch (err) {
      await this.kill();
      throw err;
    }
    // After a successful start, an unexpected exit only needs to leave the set.
    child.once('exit', () => liveChildren.delete(child));
  }

  async kill(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
      if (child) liveChildren.delete(child);
      return;
    }
    // SIGKILL straight away: the filesystem driver writes blobs via temp files + rename, so an abrupt
    // stop leaves consistent storage, and tests should not wait for graceful draining.
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.ref(); // we are waiting for it now: keep the event loop alive until it is gone
      child.kill('SIGKILL');
    });
    liveChildren.delete(child);
  }
}

const SETPRIV = '/usr/bin/setpriv';

/** Polls GET /v2/ until it answers 200 or 401 (the registry is serving), or times out. */
async function waitForV2(url: string, timeoutMs: number, logs: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  let delay = 10;
  while (Date.now() < deadline) {
    try {
      const status = await getStatus(url);
      if (status === 200 || status === 401) return;
      last = `HTTP ${status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 100);
  }
  throw new Error(`docker-registry did not answer ${url} within ${timeoutMs} ms (last: ${last}); its output:\n${logs().trim()}`);
}

function getStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

// ---------------------------------------------------------------------------------------------
// Process-wide cleanup: children and temp dirs must not outlive the test process.

const liveChildren = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let handlersInstalled = false;

const WORKDIR_PREFIX = 'ferry-registry-';
const OWNER_FILE = 'owner.pid';
let swept = false;

/**
 * Removes work dirs left behind by test processes that were SIGKILLed (their registries died with
 * them thanks to pdeathsig, but nothing could delete the files). Once per process, cheap.
 */
function sweepStaleDirsOnce(): void {
  if (swept) return;
  swept = true;
  let entries: string[];
  try {
    entries = readdirSync(tmpdir()).filter((e) => e.startsWith(WORKDIR_PREFIX));
  } catch {
    return;
  }
  for (const entry of entries) {
    const dir = join(tmpdir(), entry);
    try {
      const pid = Number(readFileSync(join(dir, OWNER_FILE), 'utf8'));
      if (!Number.isInteger(pid) || pid <= 0 || processAlive(pid)) continue;
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // no owner file (being created right now, or not ours): leave it
    }
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function removeDir(dir: string): void {
  tempDirs.delete(dir);
  rmSync(dir, { recursive: true, force: true });
}

function killAllSync(): void {
  for (const child of liveChildren) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  liveChildren.clear();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  // 'exit' handlers must be synchronous: kill() and rmSync are.
  process.on('exit', killAllSync);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = (): void => {
      killAllSync();
      // We must not swallow the signal: if nobody else handles it, restore the default and re-raise.
      if (process.listenerCount(signal) === 1) {
        process.off(signal, handler);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, handler);
  }
}

function deepMerge(target: Record<string, unknown>, source: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(source)) {
    const existing = target[key];
    if (isPlainObject(existing) && isPlainObject(value)) deepMerge(existing, value);
    else target[key] = value;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
