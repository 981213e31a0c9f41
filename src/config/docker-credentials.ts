// Registry credentials from where docker, podman and skopeo users already keep them, for a registry
// whose config gives no username (and for `ferry copy` without a config):
//
//   1. $REGISTRY_AUTH_FILE, then $XDG_RUNTIME_DIR/containers/auth.json, then
//      ~/.config/containers/auth.json (containers-auth.json(5): podman, skopeo, buildah);
//   2. $DOCKER_CONFIG/config.json, default ~/.docker/config.json.
//
// In each file, as docker reads it: `credHelpers[host]` names a helper for that host, else `credsStore`
// names one for every host, else `auths[host]` holds `auth` (base64 "user:password") or
// `username`/`password`. A helper is the program `docker-credential-<name>`, run with the argument
// `get`, the server on stdin, and `{"ServerURL","Username","Secret"}` on stdout.
//
// Secrets never leave this module except in the returned credential: errors and log records name the
// file, the host and the helper, never what they answered.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { FerryConfig, RegistryConfig } from './schema.js';

export interface RegistryCredential {
  username: string;
  password: string;
  /** Where it came from, for logs: a file (and key) or a helper. Never the secret. */
  source: string;
}

export interface CredentialLookupOptions {
  env?: NodeJS.ProcessEnv | undefined;
  /** Default os.homedir(). */
  home?: string | undefined;
  logger?: Logger | undefined;
  /** How long a credential helper may take (ms, default 15 000). */
  helperTimeoutMs?: number | undefined;
}

/** A credential helper failed in a way other than "no credentials for this server". */
export class CredentialHelperError extends Error {
  override name = 'CredentialHelperError';
}

interface AuthEntry {
  auth?: unknown;
  username?: unknown;
  password?: unknown;
  identitytoken?: unknown;
}

interface AuthFile {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

/** The auth files to read, most specific first (podman's order, then docker's). */
export function authFiles(opts: CredentialLookupOptions = {}): string[] {
  const env = opts.env ?? process.env;
  const home = opts.home ?? env.HOME ?? homedir();
  const files: string[] = [];
  if (env.REGISTRY_AUTH_FILE) files.push(env.REGISTRY_AUTH_FILE);
  if (env.XDG_RUNTIME_DIR) files.push(join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  files.push(join(env.XDG_CONFIG_HOME ?? join(home, '.config'), 'containers', 'auth.json'));
  files.push(join(env.DOCKER_CONFIG ?? join(home, '.docker'), 'config.json'));
  return [...new Set(files)];
}

/** Docker Hub is stored under its v1 index URL. */
const DOCKER_HUB_KEYS = ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io'];

/** The keys an auths entry for `host` may be stored under (with or without scheme and path). */
function matchesHost(key: string, host: string): boolean {
  const bare = key.replace(/^https?:\/\//i, '').replace(/\/.*$/, '').toLowerCase();
  const h = host.toLowerCase();
  if (bare === h) return true;
  return DOCKER_HUB_KEYS.includes(h) && DOCKER_HUB_KEYS.some((k) => k.replace(/^https?:\/\//, '').replace(/\/.*$/, '') === bare);
}

function readAuthFile(file: string, logger: Logger | undefined): AuthFile | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined; // absent: the usual case
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    return parsed && typeof parsed === 'object' ? (parsed as AuthFile) : undefined;
  } catch {
    logger?.warn({ file }, 'credentials file is not valid JSON: ignored');
    return undefined;
  }
}

function fromAuthEntry(entry: AuthEntry, source: string, logger: Logger | undefined): RegistryCredential | undefined {
  if (typeof entry.auth === 'string' && entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1), source };
    logger?.warn({ source }, 'credentials entry: "auth" is not base64 of user:password: ignored');
  }
  if (typeof entry.username === 'string' && typeof entry.password === 'string' && entry.username) {
    return { username: entry.username, password: entry.password, source };
  }
  if (typeof entry.identitytoken === 'string' && entry.identitytoken) {
    logger?.warn({ source }, 'credentials entry holds an identity token (OAuth refresh token), which Ferry does not use: give a username and password');
  }
  return undefined;
}

/** Runs `docker-credential-<helper> get` as docker does: server on stdin, JSON on stdout. */
export async function runCredentialHelper(helper: string, server: string, opts: CredentialLookupOptions = {}): Promise<RegistryCredential | undefined> {
  const program = `docker-credential-${helper}`;
  const { code, stdout, stderr, error } = await new Promise<{ code: number | null; stdout: string; stderr: string; error?: Error }>((resolve) => {
    const child = spawn(program, ['get'], { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.helperTimeoutMs ?? 15_000);
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: null, stdout: '', stderr: '', error: e });
    });
    child.on('close', (c) => {
      clearTimeout(timer);
      resolve({ code: c, stdout: out, stderr: err });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(server);
  });
  if (error) {
    const why = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found on PATH' : error.message;
    throw new CredentialHelperError(`credential helper ${program}: ${why}`);
  }
  if (code !== 0) {
    // docker's helpers answer "credentials not found in native keychain" (on stdout) for an unknown server.
    if (/credentials not found/i.test(stdout + stderr)) return undefined;
    // Only the first line, and only from stderr: stdout may hold the secret.
    throw new CredentialHelperError(`credential helper ${program} failed (exit ${code ?? 'killed'})${stderr.trim() ? `: ${stderr.trim().split('\n')[0]!.slice(0, 200)}` : ''}`);
  }
  let answer: { Username?: unknown; Secret?: unknown };
  try {
    answer = JSON.parse(stdout) as typeof answer;
  } catch {
    throw new CredentialHelperError(`credential helper ${program} answered something other than JSON`);
  }
  if (typeof answer.Username !== 'string' || typeof answer.Secret !== 'string' || !answer.Secret) return undefined;
  if (answer.Username === '<token>') {
    opts.logger?.warn({ helper: program, server }, 'credential helper gave an identity token (OAuth refresh token), which Ferry does not use');
    return undefined;
  }
  return { username: answer.Username, password: answer.Secret, source: program };
}

/**
 * The credential docker, podman or skopeo would use for `host` ("harbor.example.com",
 * "127.0.0.1:5000"), or undefined. A failing helper is logged and the next file is tried.
 */
export async function lookupCredential(host: string, opts: CredentialLookupOptions = {}): Promise<RegistryCredential | undefined> {
  for (const file of authFiles(opts)) {
    const data = readAuthFile(file, opts.logger);
    if (!data) continue;
    const helperKey = data.credHelpers ? Object.keys(data.credHelpers).find((k) => matchesHost(k, host)) : undefined;
    const helper = helperKey ? data.credHelpers![helperKey] : data.credsStore;
    if (typeof helper === 'string' && helper) {
      try {
        // Helpers are asked with the key docker stored the login under (a v1 URL for Docker Hub).
        const found = await runCredentialHelper(helper, helperKey ?? (DOCKER_HUB_KEYS.includes(host) ? DOCKER_HUB_KEYS[0]! : host), opts);
        if (found) return found;
      } catch (err) {
        opts.logger?.warn({ file, host, err: (err as Error).message }, 'credential helper failed: trying the next source');
      }
    }
    const key = data.auths ? Object.keys(data.auths).find((k) => matchesHost(k, host)) : undefined;
    if (key) {
      const found = fromAuthEntry(data.auths![key] ?? {}, `${file} (auths["${key}"])`, opts.logger);
      if (found) return found;
    }
  }
  return undefined;
}

/** True when the config names no login of its own, so one from docker's or podman's files may be used. */
export function wantsStoredCredentials(reg: RegistryConfig): boolean {
  if (reg.username !== undefined || reg.password !== undefined) return false;
  // A TCR or SWR registry with API keys logs in with them (temporary instance tokens, AK/SK).
  if (reg.tcr || (reg.swr?.accessKey && reg.swr.secretKey)) return false;
  return true;
}

/**
 * A copy of `config` in which each of `names` (default: every registry) that has no login of its own
 * gets the one found by lookupCredential, if any.
 */
export async function withStoredCredentials(config: FerryConfig, names: Iterable<string> = Object.keys(config.registries), opts: CredentialLookupOptions = {}): Promise<FerryConfig> {
  const registries = { ...config.registries };
  for (const name of new Set(names)) {
    const reg = registries[name];
    if (!reg || !wantsStoredCredentials(reg)) continue;
    const host = new URL(reg.url).host;
    const found = await lookupCredential(host, opts);
    if (!found) continue;
    opts.logger?.debug({ registry: name, host, source: found.source }, 'using stored registry credentials');
    registries[name] = { ...reg, username: found.username, password: found.password };
  }
  return { ...config, registries };
}
