// argv → commands. Exit codes (README.md, docs/operations.md): 0 all copied or present, 1 some artifacts failed,
// 2 invalid config or arguments, 3 a registry could not be reached or refused the credentials.
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ConfigError, ONE_SHOT_UNUSED_SECTIONS, loadConfig, parseConfig } from '../config/load.js';
import type { FerryConfig } from '../config/schema.js';
import { Engine, PreflightError, UnknownRuleError } from '../engine/engine.js';
import { copyRef } from '../engine/copy-ref.js';
import { type SyncReport, formatTextReport } from '../engine/report.js';
import { type Logger, LogOptionError, createLogger, parseLogFormat, parseLogLevel } from '../log.js';
import { FERRY_VERSION } from '../version.js';
import { formatDifference, formatVerifyText, verifyRules } from '../engine/verify.js';
import { withStoredCredentials } from '../config/docker-credentials.js';
import type { RequestObserver } from '../http/observe.js';
import { ShardError, formatShard, resolveShard, shardFilter } from '../plan/shard.js';
import { StateDatabaseError } from '../state/postgres.js';
import { StateLockedError } from '../state/types.js';
import { ProgressDisplay, progressMode } from './progress.js';
import { RefError, resolveRef } from '../engine/refs.js';
import { withGracefulSignals } from './signals.js';

export const ExitCode = { ok: 0, partial: 1, invalid: 2, unreachable: 3, interrupted: 130, terminated: 143 } as const;

class UsageError extends Error {
  override name = 'UsageError';
}

interface GlobalOptions {
  config?: string;
  output: 'text' | 'json';
  logLevel?: string;
  stateDir?: string;
  quiet?: boolean;
}


function outputOption(): Option {
  return new Option('-o, --output <format>', 'report format').choices(['text', 'json']).default('text');
}

function write(text: string): void {
  process.stdout.write(text);
}

function printReport(report: SyncReport, format: 'text' | 'json'): void {
  write(format === 'json' ? `${JSON.stringify(report, null, 2)}\n` : formatTextReport(report));
}

function exitFor(report: SyncReport): number {
  if (report.status === 'cancelled') return ExitCode.interrupted;
  if (report.totals.artifacts.failed > 0 || report.rules.some((r) => r.status === 'failed' || r.status === 'partial')) return ExitCode.partial;
  // A plan exits 1 for what would make the sync exit 1 (collisions, invalid names, schema 1 content),
  // so CI can gate on `ferry plan`.
  if (report.dryRun && report.rules.some((r) => r.problems.length > 0 || r.plan?.some((p) => p.action === 'error'))) return ExitCode.partial;
  return ExitCode.ok;
}

/**
 * `--log-level debug`: one record per HTTP request, as `skopeo --debug` shows them: method, URL (the
 * request layer strips the query, which may carry upload state or signatures; headers never reach it),
 * status and time.
 */
export function requestLog(logger: Logger): RequestObserver | undefined {
  if (!logger.isLevelEnabled('debug')) return undefined;
  return (e) =>
    logger.debug(
      { registry: e.registry, method: e.method, url: e.url, kind: e.kind, status: e.status, error: e.error, durationMs: Math.round(e.durationMs), attempt: e.attempt },
      `${e.method} ${e.url} ${e.status ?? e.error ?? '?'} ${Math.round(e.durationMs)}ms${e.attempt > 1 ? ` (attempt ${e.attempt})` : ''}`,
    );
}

/** One-shot commands (sync, plan, check, copy, verify) never read the `daemon` section's variables. */
function loadOneShotConfig(file: string): FerryConfig {
  return loadConfig(file, process.env, { unusedSections: ONE_SHOT_UNUSED_SECTIONS });
}

function requireConfig(file: string | undefined, load: (file: string) => FerryConfig = loadOneShotConfig): FerryConfig {
  if (!file) throw new UsageError('--config FILE is required');
  return load(file);
}

/** The registries the named rules (default: the enabled ones) use; every registry for an unknown rule (it fails later, exit 2). */
function registriesOfRules(config: FerryConfig, names: string[]): string[] {
  const rules = names.length ? config.rules.filter((r) => names.includes(r.name)) : config.rules.filter((r) => r.enabled);
  if (names.length && rules.length !== names.length) return Object.keys(config.registries);
  return rules.flatMap((r) => [r.source, r.destination]);
}

/** `--src-creds USERNAME:PASSWORD`, as skopeo takes it. */
function parseCreds(value: string | undefined, option: string): { username: string; password: string } | undefined {
  if (value === undefined) return undefined;
  const colon = value.indexOf(':');
  if (colon <= 0) throw new UsageError(`${option}: expected USERNAME:PASSWORD`);
  return { username: value.slice(0, colon), password: value.slice(colon + 1) };
}

/** The format asked for with -o/--output anywhere in argv (also when parsing failed before an action ran). */
export function outputFormatOf(argv: string[]): 'text' | 'json' {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if ((a === '-o' || a === '--output') && argv[i + 1] === 'json') return 'json';
    if (a === '--output=json' || a === '-ojson') return 'json';
  }
  return 'text';
}

/** What `--output json` prints when a command cannot produce its report (exit 2, 3, or a crash). */
export function errorDocument(err: unknown, exitCode: number): Record<string, unknown> {
  const e = err instanceof Error ? err : new Error(String(err));
  const error: Record<string, unknown> = { name: e.name, message: e.message };
  if (err instanceof ConfigError) Object.assign(error, { file: err.file, problems: err.problems });
  if (err instanceof PreflightError) error.failures = err.failures;
  return { version: 1, status: 'error', exitCode, error };
}

function withStateDir(config: FerryConfig, stateDir: string | undefined): FerryConfig {
  return stateDir ? { ...config, transfer: { ...config.transfer, stateDir } } : config;
}

export function buildProgram(run: { code: number }): Command {
  const program = new Command('ferry')
    .description('Replicates container images, OCI artifacts and Helm charts between registries (Harbor, TCR, SWR, any OCI registry).')
    .version(FERRY_VERSION, '-V, --version', 'print the version and exit')
    .option('--log-level <level>', 'fatal | error | warn | info | debug | trace | silent (logs go to stderr; default $FERRY_LOG_LEVEL or info)')
    .option('--log-format <format>', 'pretty (one line per record, the default on a terminal) | json (JSON lines, the default otherwise and for the daemon); or $FERRY_LOG_FORMAT')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  // Validated before any command runs, so a typo is a usage error (exit 2) and not a stack trace.
  program.hook('preAction', () => {
    logSettings();
  });

  function logSettings(daemon = false): { level: string; format: 'json' | 'pretty' } {
    const o = program.opts<{ logLevel?: string; logFormat?: string }>();
    const level = o.logLevel !== undefined ? parseLogLevel(o.logLevel, '--log-level') : parseLogLevel(process.env.FERRY_LOG_LEVEL ?? 'info', 'FERRY_LOG_LEVEL');
    const format =
      o.logFormat !== undefined
        ? parseLogFormat(o.logFormat, '--log-format')
        : process.env.FERRY_LOG_FORMAT
          ? parseLogFormat(process.env.FERRY_LOG_FORMAT, 'FERRY_LOG_FORMAT')
          : !daemon && process.stderr.isTTY
            ? 'pretty'
            : 'json';
    return { level, format };
  }

  /** The command's logger: on a TTY through the progress display's stream, so lines never tear it. */
  function makeLogger(progress?: ProgressDisplay, daemon = false): Logger {
    const { level, format } = logSettings(daemon);
    const destination = progress?.mode === 'tty' ? progress.logStream() : 2;
    return createLogger(level, destination, { format, colorize: format === 'pretty' && !!process.stderr.isTTY });
  }

  program
    .command('sync')
    .description('run every rule (or the named ones) once and exit')
    .option('-c, --config <file>', 'config file (YAML)')
    .option('-r, --rule <name>', 'run only this rule (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--dry-run', 'list the planned copies and copy nothing')
    .addOption(outputOption())
    .option('--state-dir <dir>', 'the state database directory (overrides transfer.stateDir; default $FERRY_STATE_DIR)')
    .option('--shard <i/n>', 'copy only shard i of n (0-based: 0..n-1), split by a stable hash of the source repository path; or FERRY_SHARD=i/n')
    .option('--shards <n>', 'split into n shards and take this process\'s index from JOB_COMPLETION_INDEX (Kubernetes Indexed Job) or FERRY_SHARD')
    .option('-q, --quiet', 'no progress display (TTY) or progress log lines')
    .action(async (opts: GlobalOptions & { rule: string[]; dryRun?: boolean; shard?: string; shards?: string }) => {
      const shard = resolveShard({ shard: opts.shard, shards: opts.shards });
      const progress = new ProgressDisplay({ mode: opts.dryRun ? 'none' : progressMode({ quiet: opts.quiet, isTTY: process.stderr.isTTY }) });
      const logger = makeLogger(progress);
      const loaded = withStateDir(requireConfig(opts.config), opts.stateDir ?? process.env.FERRY_STATE_DIR);
      const config = await withStoredCredentials(loaded, registriesOfRules(loaded, opts.rule), { logger });
      const engine = new Engine(config, { logger, onRequest: requestLog(logger), stateDir: opts.dryRun ? false : undefined, readStateOnly: !!opts.dryRun });
      try {
        const rules = engine.selectRules(opts.rule);
        if (shard) logger.info({ shard: formatShard(shard) }, `shard ${formatShard(shard)}: only the source repositories whose hash falls in this shard`);
        progress.start(engine.events, { rules: rules.map((r) => r.name), logger });
        const { result: report, signal } = await withGracefulSignals(logger, { gracePeriodSeconds: config.transfer.gracePeriod }, ({ stop, abort }) =>
          engine.sync({ rules: opts.rule, dryRun: opts.dryRun, signal: abort, stop, repositoryFilter: shard ? shardFilter(shard) : undefined }),
        ).finally(() => progress.stop());
        printReport(report, opts.output);
        run.code = signal ? (signal === 'SIGINT' ? ExitCode.interrupted : ExitCode.terminated) : exitFor(report);
      } finally {
        await engine.close();
      }
    });

  program
    .command('plan')
    .description('show what a sync would copy (same as sync --dry-run)')
    .option('-c, --config <file>', 'config file (YAML)')
    .option('-r, --rule <name>', 'plan only this rule (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .addOption(outputOption())
    .option('--state-dir <dir>', 'read what the rules pushed earlier (deleteRemote deletions) from here (overrides transfer.stateDir; default $FERRY_STATE_DIR); nothing is written')
    .option('--shard <i/n>', 'plan only shard i of n (0-based), as `sync --shard` would copy it; or FERRY_SHARD=i/n')
    .option('--shards <n>', 'split into n shards, index from JOB_COMPLETION_INDEX or FERRY_SHARD')
    .action(async (opts: GlobalOptions & { rule: string[]; shard?: string; shards?: string }) => {
      const shard = resolveShard({ shard: opts.shard, shards: opts.shards });
      const logger = makeLogger();
      const loaded = withStateDir(requireConfig(opts.config), opts.stateDir ?? process.env.FERRY_STATE_DIR);
      const config = await withStoredCredentials(loaded, registriesOfRules(loaded, opts.rule), { logger });
      const engine = new Engine(config, { logger, onRequest: requestLog(logger), stateDir: false, readStateOnly: true });
      try {
        engine.selectRules(opts.rule);
        const report = await engine.sync({ rules: opts.rule, dryRun: true, repositoryFilter: shard ? shardFilter(shard) : undefined });
        printReport(report, opts.output);
        run.code = exitFor(report);
      } finally {
        await engine.close();
      }
    });

  program
    .command('check')
    .description('reach and authenticate every registry, and report what it supports')
    .option('-c, --config <file>', 'config file (YAML)')
    .option('--probe-repository <repo>', 'also test push, chunked uploads and mounts by opening (and cancelling) upload sessions in this repository')
    .addOption(outputOption())
    .action(async (opts: GlobalOptions & { probeRepository?: string }) => {
      const logger = makeLogger();
      const config = await withStoredCredentials(requireConfig(opts.config), undefined, { logger });
      const engine = new Engine(config, { logger, onRequest: requestLog(logger), stateDir: false });
      try {
        const reports = await Promise.all(Object.keys(config.registries).map((name) => engine.provider(name).check({ probeRepository: opts.probeRepository })));
        if (opts.output === 'json') write(`${JSON.stringify({ registries: reports }, null, 2)}\n`);
        else {
          for (const r of reports) {
            write(`${r.registry} (${r.kind}, ${r.url}): ${r.reachable ? 'reachable' : 'UNREACHABLE'}, ${r.authenticated ? 'authenticated' : 'NOT authenticated'}\n`);
            if (r.error) write(`  error: ${r.error}\n`);
            for (const [feature, value] of Object.entries(r.features)) write(`  ${feature}: ${value === true ? 'yes' : value === false ? 'no' : value}\n`);
          }
        }
        run.code = reports.every((r) => r.reachable && r.authenticated) ? ExitCode.ok : ExitCode.unreachable;
      } finally {
        await engine.close();
      }
    });

  program
    .command('copy')
    .description('copy one image, e.g. ferry copy harbor/library/nginx:1.27 tcr/prod/nginx:1.27')
    .argument('<src>', 'source reference: REGISTRY/REPOSITORY[:TAG|@DIGEST]; REGISTRY is a name from the config or a host[:port] (with a dot or a port, or localhost)')
    .argument('<dst>', 'destination reference (the tag defaults to the source tag)')
    .option('-c, --config <file>', 'config file for credentials and transfer settings')
    .addOption(outputOption())
    .option('--src-creds <user:password>', 'log in to the source with these (default: the config, then docker/podman credential files and helpers)')
    .option('--dest-creds <user:password>', 'log in to the destination with these')
    .option('-q, --quiet', 'no progress display (TTY) or progress log lines')
    .action(async (src: string, dst: string, opts: GlobalOptions & { srcCreds?: string; destCreds?: string }) => {
      const progress = new ProgressDisplay({ mode: progressMode({ quiet: opts.quiet, isTTY: process.stderr.isTTY }) });
      const logger = makeLogger(progress);
      const base = opts.config ? loadOneShotConfig(opts.config) : parseConfig({ registries: {} }, '<command line>');
      const from = resolveRef(src, base);
      const to = resolveRef(dst, { registries: from.registries });
      if (!/[:@]/.test(dst.split('/').pop() ?? '')) to.ref.reference = from.ref.reference;
      // Not validated again: `base` is, and resolveRef's ad-hoc registries are named by host[:port].
      let config: FerryConfig = { ...base, registries: { ...to.registries }, rules: [] };
      const given: [string, { username: string; password: string } | undefined][] = [
        [from.ref.registry, parseCreds(opts.srcCreds, '--src-creds')],
        [to.ref.registry, parseCreds(opts.destCreds, '--dest-creds')],
      ];
      for (const [name, creds] of given) if (creds) config.registries[name] = { ...config.registries[name]!, ...creds };
      config = await withStoredCredentials(config, [from.ref.registry, to.ref.registry], { logger });
      const engine = new Engine(config, { logger, onRequest: requestLog(logger), stateDir: false });
      try {
        progress.start(engine.events, { rules: ['copy'], logger });
        const report = await copyRef(engine, from.ref, to.ref).finally(() => progress.stop());
        printReport(report, opts.output);
        run.code = exitFor(report);
      } finally {
        await engine.close();
      }
    });

  program
    .command('verify')
    .description('compare each destination with its source for every artifact the rules select: tags, digests, children, blobs, referrers (reads only)')
    .option('-c, --config <file>', 'config file (YAML)')
    .option('-r, --rule <name>', 'verify only this rule (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .addOption(outputOption())
    .option('--shard <i/n>', 'verify only shard i of n (0-based), as `sync --shard` copies it; or FERRY_SHARD=i/n')
    .option('--shards <n>', 'split into n shards, index from JOB_COMPLETION_INDEX or FERRY_SHARD')
    .action(async (opts: GlobalOptions & { rule: string[]; shard?: string; shards?: string }) => {
      const shard = resolveShard({ shard: opts.shard, shards: opts.shards });
      const logger = makeLogger();
      const loaded = requireConfig(opts.config);
      const config = await withStoredCredentials(loaded, registriesOfRules(loaded, opts.rule), { logger });
      // No state directory: verify writes nothing anywhere.
      const engine = new Engine(config, { logger, onRequest: requestLog(logger), stateDir: false });
      try {
        const rules = engine.selectRules(opts.rule);
        const report = await verifyRules(engine, rules, {
          repositoryFilter: shard ? shardFilter(shard) : undefined,
          // Text: each difference as soon as it is found (an audit of a big registry takes a while).
          onDifference: opts.output === 'text' ? (d) => write(`${formatDifference(d)}\n`) : undefined,
        });
        write(opts.output === 'json' ? `${JSON.stringify(report, null, 2)}\n` : formatVerifyText(report));
        run.code = report.status === 'match' ? ExitCode.ok : ExitCode.partial;
      } finally {
        await engine.close();
      }
    });

  program
    .command('daemon')
    .description('run as a service: schedules, Harbor webhooks, HTTP API, metrics')
    .option('-c, --config <file>', 'config file (YAML)')
    .option('--state-dir <dir>', 'the state database directory (overrides transfer.stateDir; default $FERRY_STATE_DIR)')
    .action(async (opts: GlobalOptions) => {
      const logger = makeLogger(undefined, true);
      const file = opts.config;
      requireConfig(file, (f) => loadConfig(f));
      const { runDaemon } = await import('../daemon/index.js');
      run.code = await runDaemon({ configFile: file!, stateDir: opts.stateDir ?? process.env.FERRY_STATE_DIR, logger });
    });

  return program;
}

/** Entry point for bin/ferry.js; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const run = { code: ExitCode.ok as number };
  const program = buildProgram(run);
  if (argv.length === 0) {
    // As docker, kubectl, skopeo and regctl do: the help, exit 0 (an unknown command is exit 2).
    program.outputHelp();
    return ExitCode.ok;
  }
  const output = outputFormatOf(argv);
  const fail = (err: unknown, code: number, text: string): number => {
    process.stderr.write(`ferry: ${text}\n`);
    // --output json: stdout is one JSON document whatever happened (here: the error).
    if (output === 'json') process.stdout.write(`${JSON.stringify(errorDocument(err, code), null, 2)}\n`);
    return code;
  };
  try {
    await program.parseAsync(argv, { from: 'user' });
    return run.code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return ExitCode.ok;
      // commander already wrote its message to stderr.
      if (output === 'json') process.stdout.write(`${JSON.stringify(errorDocument(new UsageError(err.message.replace(/^error: /, '')), ExitCode.invalid), null, 2)}\n`);
      return ExitCode.invalid;
    }
    if (
      err instanceof ConfigError ||
      err instanceof UsageError ||
      err instanceof RefError ||
      err instanceof InvalidArgumentError ||
      err instanceof UnknownRuleError ||
      err instanceof ShardError ||
      err instanceof StateLockedError ||
      err instanceof LogOptionError
    ) {
      return fail(err, ExitCode.invalid, err.message);
    }
    if (err instanceof PreflightError) return fail(err, ExitCode.unreachable, err.message);
    // The state database (state.url) out of reach before anything ran: like a registry, exit 3.
    if (err instanceof StateDatabaseError) return fail(err, ExitCode.unreachable, err.message);
    return fail(err, ExitCode.partial, err instanceof Error ? (err.stack ?? err.message) : String(err));
  }
}
