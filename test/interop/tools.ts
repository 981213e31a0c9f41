// The real clients and registries of the interop tests: where scripts/install-go-tools.mjs put them
// (the same paths, computed from scripts/go-tools.json), a runner that fails with the tool's own
// output, one client home per test file (docker config.json with the registries' credentials, helm's
// and regctl's config), and the registries that are not distribution 2.8: distribution v3 (through
// test/helpers' startRegistry) and go-containerregistry's registry with the Referrers API.
import { spawn } from 'node:child_process';
import { createServer, request as httpRequest } from 'node:http';
import { createHash } from 'node:crypto';
import { accessSync, constants, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type RegistryUser, type StartRegistryOptions, type TestRegistry, DEFAULT_USERS, LOOPBACK, listenOnFreePort, startRegistry, startTokenIssuer } from '../helpers/index.js';
import { closeServer } from '../helpers/token-issuer.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

interface ToolEntry {
  name: string;
  version?: string;
  dir?: string;
  bins: string[];
}

const table = JSON.parse(readFileSync(join(repoRoot, 'scripts', 'go-tools.json'), 'utf8')) as { tools: ToolEntry[] };
const toolsDir = process.env.FERRY_TOOLS_DIR || join(homedir(), '.cache', 'ferry-tools');

/** As toolVersion() in scripts/install-go-tools.mjs: a program of this repository is versioned by its sources' hash. */
function toolVersion(tool: ToolEntry): string {
  if (!tool.dir) return tool.version!;
  const hash = createHash('sha256');
  for (const file of ['go.mod', 'go.sum', 'main.go']) hash.update(readFileSync(join(repoRoot, tool.dir, file)));
  return `src-${hash.digest('hex').slice(0, 12)}`;
}

/** The path of a binary (helm, cosign, oras, regctl, regsync, crane, registry, referrers-registry). */
export function toolPath(bin: string): string {
  const tool = table.tools.find((t) => t.bins.includes(bin));
  if (!tool) throw new Error(`no tool in scripts/go-tools.json provides ${bin}`);
  const path = join(toolsDir, `${tool.name}@${toolVersion(tool)}`, 'bin', bin);
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`${path} is missing: run \`node scripts/install-go-tools.mjs\` (npm run test:interop does)`);
  }
  return path;
}

export interface RunResult {
  stdout: string;
  stdoutBytes: Buffer;
  stderr: string;
}

export class ToolError extends Error {
  constructor(
    readonly command: string,
    readonly code: number | null,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(`${command} exited with ${code}\n--- stderr\n${stderr.slice(-4000)}\n--- stdout\n${stdout.slice(-2000)}`);
  }
}

/** A home for the clients of one test file: HOME, DOCKER_CONFIG, helm's and regctl's config live in it. */
export class ClientHome {
  readonly dir = mkdtempSync(join(tmpdir(), 'ferry-interop-'));
  private readonly auths: Record<string, { auth: string }> = {};
  private readonly regctlHosts: Record<string, { tls: 'disabled'; user?: string; pass?: string }> = {};

  env(): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH,
      HOME: this.dir,
      TMPDIR: this.dir,
      DOCKER_CONFIG: join(this.dir, '.docker'),
      HELM_CACHE_HOME: join(this.dir, 'helm', 'cache'),
      HELM_CONFIG_HOME: join(this.dir, 'helm', 'config'),
      HELM_DATA_HOME: join(this.dir, 'helm', 'data'),
      // helm reads the same credentials as the others (it writes this format itself on `helm registry login`).
      HELM_REGISTRY_CONFIG: join(this.dir, '.docker', 'config.json'),
      REGCTL_CONFIG: join(this.dir, 'regctl.json'),
      // cosign: key password, no transparency log lookups, no update checks.
      COSIGN_PASSWORD: 'interop-key-password',
      COSIGN_YES: 'true',
      SIGSTORE_NO_CACHE: 'true',
      TUF_ROOT: join(this.dir, 'tuf'),
    };
  }

  /** Records a registry's credentials in the docker config.json every client reads, and makes regctl use plain HTTP. */
  addRegistry(host: string, user?: { username: string; password: string }): void {
    if (user) this.auths[host] = { auth: Buffer.from(`${user.username}:${user.password}`).toString('base64') };
    mkdirSync(join(this.dir, '.docker'), { recursive: true });
    writeFileSync(join(this.dir, '.docker', 'config.json'), JSON.stringify({ auths: this.auths }, null, 2));
    // What `regctl registry set HOST --tls disabled` and `regctl registry login` write.
    this.regctlHosts[host] = { tls: 'disabled', ...(user ? { user: user.username, pass: user.password } : {}) };
    writeFileSync(join(this.dir, 'regctl.json'), JSON.stringify({ hosts: this.regctlHosts }, null, 2));
  }

  /** Runs a tool; throws ToolError (with its stderr) on a non-zero exit. */
  run(bin: string, args: string[], opts: { input?: string | Buffer; cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
    const path = toolPath(bin);
    const command = `${bin} ${args.join(' ')}`;
    return new Promise((resolve, reject) => {
      const child = spawn(path, args, { cwd: opts.cwd ?? this.dir, env: { ...this.env(), ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (c: Buffer) => out.push(c));
      child.stderr.on('data', (c: Buffer) => err.push(c));
      const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        const stdoutBytes = Buffer.concat(out);
        const stdout = stdoutBytes.toString('utf8');
        const stderr = Buffer.concat(err).toString('utf8');
        if (code === 0) resolve({ stdout, stdoutBytes, stderr });
        else reject(new ToolError(command, code, stdout, stderr));
      });
      child.stdin.end(opts.input ?? '');
    });
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** distribution v3 (built by install-go-tools) with the same config, auth modes and helpers as distribution 2.8. */
export function startDistributionV3(opts: StartRegistryOptions = {}): Promise<TestRegistry> {
  return startRegistry({ ...opts, binary: toolPath('registry') });
}

export interface ReferrersRegistry {
  readonly url: string;
  readonly host: string;
  readonly username: string;
  readonly password: string;
  readonly users: readonly RegistryUser[];
  logs(): string;
  stop(): Promise<void>;
}

/**
 * go-containerregistry's registry with the OCI 1.1 Referrers API (scripts/go/referrers-registry) on a
 * free loopback port, with Basic auth, blobs on a temporary disk directory.
 */
export async function startReferrersRegistry(user: RegistryUser = { username: 'ferry', password: 's3cret' }): Promise<ReferrersRegistry> {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-referrers-registry-'));
  const child = spawn(toolPath('referrers-registry'), ['-addr', `${LOOPBACK}:0`, '-disk', join(dir, 'blobs'), '-user', `${user.username}:${user.password}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (c: Buffer) => {
    output = (output + c.toString('utf8')).slice(-65536);
  };
  child.stderr.on('data', keep);
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`referrers-registry did not start:\n${output}`)), 15_000);
    child.stdout.on('data', (c: Buffer) => {
      keep(c);
      const m = /listening on (\S+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`referrers-registry exited with ${code}:\n${output}`));
    });
  });
  return {
    url: `http://${address}`,
    host: address,
    username: user.username,
    password: user.password,
    users: [user],
    logs: () => output,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A registry with token auth whose token realm is on the registry's own host:port, as Harbor serves
 * /service/token next to /v2/: one loopback front routes /token to the issuer and everything else to
 * the registry. go-containerregistry's clients (crane, cosign) refuse a realm on another loopback or
 * private address (SSRF protection since v0.21), so our usual separate issuer port fails with them.
 */
export async function startSameOriginTokenRegistry(start: (opts: StartRegistryOptions) => Promise<TestRegistry> = startRegistry): Promise<TestRegistry> {
  let backend: TestRegistry | undefined;
  const issuer = await startTokenIssuer({ users: [...DEFAULT_USERS] });
  const front = createServer((req, res) => {
    const target = new URL(req.url!.startsWith('/token') ? issuer.url : backend!.url);
    const upstream = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', (err) => {
      res.writeHead(502);
      res.end(String(err));
    });
    req.pipe(upstream);
  });
  const port = await listenOnFreePort(front);
  const host = `${LOOPBACK}:${port}`;
  try {
    backend = await start({ auth: 'token', issuer, extraConfig: { auth: { token: { realm: `http://${host}/token` } } } });
  } catch (err) {
    await closeServer(front);
    await issuer.stop();
    throw err;
  }
  const registry = backend;
  return {
    ...registry,
    url: `http://${host}`,
    host,
    port,
    logs: () => registry.logs(),
    restart: () => registry.restart(),
    stop: async () => {
      await registry.stop();
      await closeServer(front);
      await issuer.stop();
    },
  };
}
