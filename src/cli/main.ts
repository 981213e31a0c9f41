// argv → commands. Exit codes (DESIGN.md): 0 all copied or present, 1 some artifacts failed,
// 2 invalid config or arguments, 3 a registry could not be reached or refused the credentials.
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ConfigError, loadConfig, parseConfig } from '../config/load.js';
import type { FerryConfig } from '../config/schema.js';
import { Engine, PreflightError, UnknownRuleError } from '../engine/engine.js';
import { copyRef } from '../engine/copy-ref.js';
import { type SyncReport, formatTextReport } from '../engine/report.js';
import { createLogger } from '../log.js';
import { ShardError, formatShard, resolveShard, shardFilter } from '../plan/shard.js';
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
  return report.totals.artifacts.failed > 0 || report.rules.some((r) => r.status === 'failed' || r.status === 'partial') ? ExitCode.partial : ExitCode.ok;
}

function requireConfig(file: string | undefined): FerryConfig {
  if (!file) throw new UsageError('--config FILE is required');
  return loadConfig(file);
}

function withStateDir(config: FerryConfig, stateDir: string | undefined): FerryConfig {
  return stateDir ? { ...config, transfer: { ...config.transfer, stateDir } } : config;
}

export function buildProgram(run: { code: number }): Command {
  const program = new Command('ferry')
    .description('Replicates container images, OCI artifacts and Helm charts between registries (Harbor, TCR, SWR, any OCI registry).')
    .option('--log-level <level>', 'pino log level (logs go to stderr)', process.env.FERRY_LOG_LEVEL ?? 'info')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

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
      const logger = createLogger(program.opts<{ logLevel: string }>().logLevel, progress.mode === 'tty' ? progress.logStream() : 2);
      const config = withStateDir(requireConfig(opts.config), opts.stateDir ?? process.env.FERRY_STATE_DIR);
      const engine = new Engine(config, { logger, stateDir: opts.dryRun ? false : undefined, readStateOnly: !!opts.dryRun });
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
    .option('--shard <i/n>', 'plan only shard i of n (0-based), as `sync --shard` would copy it; or FERRY_SHARD=i/n')
    .option('--shards <n>', 'split into n shards, index from JOB_COMPLETION_INDEX or FERRY_SHARD')
    .action(async (opts: GlobalOptions & { rule: string[]; shard?: string; shards?: string }) => {
      const shard = resolveShard({ shard: opts.shard, shards: opts.shards });
      const logger = createLogger(program.opts<{ logLevel: string }>().logLevel);
      const engine = new Engine(requireConfig(opts.config), { logger, stateDir: false, readStateOnly: true });
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
      const logger = createLogger(program.opts<{ logLevel: string }>().logLevel);
      const config = requireConfig(opts.config);
      const engine = new Engine(config, { logger, stateDir: false });
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
    .argument('<src>', 'source reference: REGISTRY/REPOSITORY[:TAG|@DIGEST]; REGISTRY is a name from the config or a host')
    .argument('<dst>', 'destination reference (the tag defaults to the source tag)')
    .option('-c, --config <file>', 'config file for credentials and transfer settings')
    .addOption(outputOption())
    .action(async (src: string, dst: string, opts: GlobalOptions) => {
      const logger = createLogger(program.opts<{ logLevel: string }>().logLevel);
      const base = opts.config ? loadConfig(opts.config) : parseConfig({ registries: {} });
      const from = resolveRef(src, base);
      const to = resolveRef(dst, { registries: from.registries });
      if (!/[:@]/.test(dst.split('/').pop() ?? '')) to.ref.reference = from.ref.reference;
      const config = parseConfig({ ...base, registries: to.registries, rules: [] });
      const engine = new Engine(config, { logger, stateDir: false });
      try {
        const report = await copyRef(engine, from.ref, to.ref);
        printReport(report, opts.output);
        run.code = exitFor(report);
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
      const logger = createLogger(program.opts<{ logLevel: string }>().logLevel);
      const file = opts.config;
      requireConfig(file);
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
    program.outputHelp();
    return ExitCode.invalid;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return run.code;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? ExitCode.ok : ExitCode.invalid;
    }
    if (err instanceof ConfigError || err instanceof UsageError || err instanceof RefError || err instanceof InvalidArgumentError || err instanceof UnknownRuleError || err instanceof ShardError || err instanceof StateLockedError) {
      process.stderr.write(`ferry: ${err.message}\n`);
      return ExitCode.invalid;
    }
    if (err instanceof PreflightError) {
      process.stderr.write(`ferry: ${err.message}\n`);
      return ExitCode.unreachable;
    }
    process.stderr.write(`ferry: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return ExitCode.partial;
  }
}
