// Reads a YAML config file, expands ${ENV} references and validates it, turning every failure into a
// ConfigError that names the file, the key path and what was expected.
import { accessSync, constants as fsConstants, readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { filterErrors } from './filter-syntax.js';
import { configSchema, type FerryConfig } from './schema.js';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly file: string,
    readonly problems: { path: string; message: string }[],
  ) {
    super(`invalid config ${file}:\n${problems.map((p) => `  ${p.path || '(top level)'}: ${p.message}`).join('\n')}`);
  }
}

/**
 * Replaces `${NAME}` (and `${NAME:-default}`) in every string of a parsed YAML tree. A missing variable
 * without a default is reported with the key path that used it. `$${...}` escapes to a literal `${...}`.
 * In a section listed in `tolerate` (one the command does not use, e.g. `daemon` for `ferry sync`), a
 * string that uses a missing variable is dropped instead: a config shared by a CronJob and the daemon
 * must not need the daemon's token in the CronJob.
 */
export function interpolateEnv(
  value: unknown,
  env: NodeJS.ProcessEnv,
  path: (string | number)[] = [],
  problems: { path: string; message: string }[] = [],
  tolerate: readonly string[] = [],
): unknown {
  if (typeof value === 'string') {
    const missing: string[] = [];
    const out = value.replace(/\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (whole, escape: string, name: string, dflt?: string) => {
      if (escape) return whole.slice(1);
      const v = env[name];
      if (v !== undefined) return v;
      if (dflt !== undefined) return dflt;
      missing.push(name);
      return '';
    });
    if (!missing.length) return out;
    if (tolerate.includes(String(path[0]))) return undefined;
    for (const name of missing) problems.push({ path: formatPath(path), message: `environment variable ${name} is not set` });
    return out;
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolateEnv(v, env, [...path, i], problems, tolerate));
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .map(([k, v]) => [k, interpolateEnv(v, env, [...path, k], problems, tolerate)] as const)
        .filter(([, v]) => v !== undefined),
    );
  }
  return value;
}

const SECRET_KEY = /password|secret|token|accessKey|webhookAuth/i;

export function formatPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('');
}

function describeIssue(issue: z.core.$ZodIssue): string {
  // Never echo what was given for a secret, even when it has the wrong type; but say what type it was
  // (`password: 123456` is a YAML number: "expected string (missing)" would send people looking elsewhere).
  if (SECRET_KEY.test(String(issue.path[issue.path.length - 1] ?? ''))) {
    if (issue.code === 'invalid_type' && issue.input !== undefined) {
      const type = issue.input === null ? 'null' : Array.isArray(issue.input) ? 'a list' : typeof issue.input === 'object' ? 'a map' : `a ${typeof issue.input}`;
      const quote = typeof issue.input === 'number' || typeof issue.input === 'boolean' ? ' (quote it in YAML: "...")' : '';
      return `expected ${issue.expected}, got ${type}${quote}`;
    }
    issue = { ...issue, input: undefined } as z.core.$ZodIssue;
  }
  switch (issue.code) {
    case 'unrecognized_keys':
      return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
    case 'invalid_type':
      return `expected ${issue.expected}${issue.input === undefined ? ' (missing)' : `, got ${describeValue(issue.input)}`}`;
    case 'invalid_value':
      return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(' | ')}${issue.input === undefined ? '' : `, got ${describeValue(issue.input)}`}`;
    case 'invalid_union':
      return `${issue.message}${issue.input === undefined ? '' : `, got ${describeValue(issue.input)}`}`;
    default:
      return issue.message;
  }
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a map';
  return JSON.stringify(v);
}

export interface ConfigLoadOptions {
  /**
   * Top-level sections the command does not use (e.g. `['daemon']` for sync, plan, check and copy):
   * an unset `${VAR}` there drops that value instead of failing. Default: none (every section is used).
   */
  unusedSections?: readonly string[] | undefined;
  /** Check that the files the config names (caFile) can be read. Default true. */
  checkFiles?: boolean | undefined;
}

/** The sections a one-shot command (sync, plan, check, copy, verify, the programmatic API) leaves alone. */
export const ONE_SHOT_UNUSED_SECTIONS = ['daemon'] as const;

/** Validates an already-parsed config object (from YAML or from the programmatic API). */
export function parseConfig(raw: unknown, file = '<inline>', env: NodeJS.ProcessEnv = process.env, opts: ConfigLoadOptions = {}): FerryConfig {
  const problems: { path: string; message: string }[] = [];
  const expanded = interpolateEnv(raw ?? {}, env, [], problems, opts.unusedSections);
  if (problems.length) throw new ConfigError(file, problems);
  const result = configSchema.safeParse(expanded, { reportInput: true });
  if (!result.success) {
    throw new ConfigError(
      file,
      result.error.issues.map((issue) => {
        // Unknown keys are reported at the object holding them; name the key itself in the path.
        const path = issue.code === 'unrecognized_keys' && issue.keys.length === 1 ? [...issue.path, issue.keys[0]!] : issue.path;
        return { path: formatPath(path), message: describeIssue(issue) };
      }),
    );
  }
  // Patterns are checked with the matcher that will use them, so a bad glob, regex or semver range is a
  // config error (exit 2) with its key path rather than a failure in the middle of a run.
  const patternProblems = result.data.rules.flatMap((rule, i) =>
    filterErrors(rule.filters).map((message) => {
      const [key, ...rest] = message.split(': ');
      return { path: `rules[${i}].${key}`, message: rest.join(': ') };
    }),
  );
  if (patternProblems.length) throw new ConfigError(file, patternProblems);
  // Files the config names are read when a registry is first used; a missing one is a config error
  // here, before anything is contacted, not a crash in the middle of a command.
  const fileProblems = Object.entries(result.data.registries).flatMap(([name, reg]) => {
    if (reg.caFile === undefined || opts.checkFiles === false) return [];
    try {
      accessSync(reg.caFile, fsConstants.R_OK);
      return [];
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message;
      return [{ path: `registries.${name}.caFile`, message: `cannot read ${JSON.stringify(reg.caFile)}: ${why}` }];
    }
  });
  if (fileProblems.length) throw new ConfigError(file, fileProblems);
  return result.data;
}

/** Reads and validates a config file. Throws ConfigError for every problem (I/O, YAML, schema). */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env, opts: ConfigLoadOptions = {}): FerryConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [{ path: '', message: `cannot read file: ${(err as Error).message}` }]);
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => ({ path: e.linePos ? `line ${e.linePos[0].line}` : '', message: e.message.split('\n')[0]! })),
    );
  }
  return parseConfig(doc.toJS(), file, env, opts);
}
