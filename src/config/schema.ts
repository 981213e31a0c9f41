// The configuration contract (documented in docs/configuration.md). Every object is strict: an unknown key is an error,
// because a typo such as `overide: false` silently ignored would overwrite a customer's tags.
import { z } from 'zod';
import { parseBandwidth, parseSize } from './units.js';

/** A string or number read by a units parser (units.ts); `expected` describes the accepted forms. */
function unitValue(parse: (v: string | number) => number | null, expected: string) {
  return z.union([z.string(), z.number()]).transform((v, ctx) => {
    const parsed = parse(v);
    if (parsed === null) {
      ctx.addIssue({ code: 'custom', message: `expected ${expected}, got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return parsed;
  });
}

const bandwidth = unitValue(parseBandwidth, 'a bandwidth such as 200Mbps, 25MB/s or 512KiB/s (0 = unlimited)');
const size = unitValue(parseSize, 'a size such as 16MiB, 512KB or a number of bytes');

const url = z
  .string()
  .refine((v) => /^https?:\/\/[^/\s]+/i.test(v), {
    message: 'expected an absolute URL with scheme, e.g. https://harbor.example.com (http:// only when meant)',
  })
  // Ferry adds /v2/ itself: a url ending in /v2 would send every request to /v2/v2/.
  .refine((v) => !/\/v2\/?$/i.test(v), { message: 'ends in /v2: give the registry\'s base URL (e.g. https://harbor.example.com); Ferry adds /v2/ itself' });

/** An IANA time zone the runtime knows (croner's own error for a bad one is a nested stack of messages). */
const timezone = z.string().refine(
  (tz) => {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: tz });
      return true;
    } catch {
      return false;
    }
  },
  { error: (issue) => `unknown time zone ${JSON.stringify(issue.input)}: expected an IANA zone such as UTC, Europe/Berlin or Asia/Shanghai` },
);

export const registryKinds = ['harbor', 'registry', 'tcr', 'swr'] as const;

export const limitsSchema = z.strictObject({
  /** Requests per second the client may send to this registry (all requests, all repositories). */
  requestsPerSecond: z.number().positive().optional(),
  /** Requests in flight to this registry at once. */
  maxConcurrency: z.number().int().positive().optional(),
});

export const tcrSchema = z.strictObject({
  secretId: z.string().min(1),
  secretKey: z.string().min(1),
  region: z.string().min(1),
  instanceId: z.string().min(1),
  apiEndpoint: url.optional(),
  /** Session token of temporary cloud credentials (X-TC-Token). */
  token: z.string().optional(),
});

export const swrSchema = z.strictObject({
  region: z.string().min(1),
  accessKey: z.string().min(1).optional(),
  secretKey: z.string().min(1).optional(),
  cloud: z.enum(['huaweicloud', 'otc']).default('huaweicloud'),
  apiEndpoint: url.optional(),
  /** X-Project-Id of the API calls; default: looked up from IAM (the project named after the region). */
  projectId: z.string().min(1).optional(),
  /** IAM endpoint for that look-up (default per cloud and region, see docs/providers.md). */
  iamEndpoint: url.optional(),
  /** Rewrite OCI manifests and indexes to Docker schema 2 media types (changes digests). */
  convertToDocker: z.boolean().default(false),
});

export const harborSchema = z.strictObject({
  /** Create missing destination projects as public (default private). */
  publicProjects: z.boolean().default(false),
  /** Also list ChartMuseum charts (Harbor up to 2.7) when `kinds` includes chart. */
  chartMuseum: z.boolean().default(true),
});

export const registrySchema = z.strictObject({
  url,
  kind: z.enum(registryKinds).default('registry'),
  username: z.string().optional(),
  password: z.string().optional(),
  insecure: z.boolean().default(false),
  caFile: z.string().optional(),
  limits: limitsSchema.optional(),
  tcr: tcrSchema.optional(),
  swr: swrSchema.optional(),
  harbor: harborSchema.optional(),
});

export const kinds = ['image', 'chart', 'artifact'] as const;

export const filtersSchema = z.strictObject({
  repositories: z.array(z.string()).optional(),
  excludeRepositories: z.array(z.string()).optional(),
  tags: z.array(z.string()).optional(),
  excludeTags: z.array(z.string()).optional(),
  tagRegex: z.string().optional(),
  semver: z.string().optional(),
  latest: z.number().int().positive().optional(),
  labels: z.array(z.string()).optional(),
  kinds: z.array(z.enum(kinds)).optional(),
  untagged: z.boolean().default(false),
});

export const flattenLevels = ['none', '1', '2', '3', 'all'] as const;

const flatten = z
  .union([z.enum(flattenLevels), z.literal(1), z.literal(2), z.literal(3)], { error: 'expected one of none | 1 | 2 | 3 | all' })
  .transform((v) => String(v) as (typeof flattenLevels)[number]);

export const triggerSchema = z.union(
  [z.literal('manual'), z.literal('event'), z.strictObject({ schedule: z.string().min(1), timezone: timezone.optional() })],
  { error: 'expected manual | event | { schedule: "<cron>", timezone?: "<IANA zone>" }' },
);

export const ruleSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'expected letters, digits, ".", "_" or "-"'),
  source: z.string(),
  destination: z.string(),
  filters: filtersSchema.default({ untagged: false }),
  destinationNamespace: z.string().optional(),
  flatten: flatten.default('none'),
  rename: z.array(z.strictObject({ from: z.string(), to: z.string() })).default([]),
  override: z.boolean().default(true),
  platforms: z.array(z.string().regex(/^[A-Za-z0-9._-]+\/[A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)?$/, 'expected os/architecture[/variant], e.g. linux/amd64 or linux/arm64/v8')).default([]),
  deleteRemote: z.boolean().default(false),
  copyReferrers: z.boolean().default(true),
  bandwidth: bandwidth.optional(),
  trigger: triggerSchema.default('manual'),
  enabled: z.boolean().default(true),
});

export const transferSchema = z.strictObject({
  concurrency: z.number().int().positive().default(8),
  /** Bytes per second for the whole process; 0 = unlimited. */
  bandwidth: bandwidth.default(0),
  /**
   * Absent: blobs of at least resumeThreshold go up resumably (PATCH chunks of 16 MiB, checkpointed),
   * smaller ones in one PUT. 0: every blob in one PUT (no resume). > 0: every blob in PATCH chunks of
   * this many bytes (Harbor's "copy by chunk").
   */
  chunkSize: size.optional(),
  retries: z.number().int().min(0).default(5),
  stateDir: z.string().default('.ferry'),
  /** State entries (blobs known at a destination) older than this are re-checked with a HEAD before being trusted (seconds, 0 = always trust). */
  journalMaxAge: z.number().int().min(0).default(7 * 24 * 3600),
  /** Blobs at least this large are uploaded resumably (checkpointed chunks) unless chunkSize is 0. */
  resumeThreshold: size.default(64 * 1024 * 1024),
  /** Idle time allowed on one request before it is aborted (seconds). */
  requestTimeout: z.number().positive().default(120),
  /**
   * Slowest average rate a blob copy may keep before the attempt is abandoned and retried: the
   * per-blob deadline is requestTimeout + size / minBlobRate (lowered under a bandwidth cap to a
   * quarter of each slot's share). 0 = no per-blob deadline.
   */
  minBlobRate: bandwidth.default(16 * 1024),
  /** Seconds SIGINT/SIGTERM waits for in-flight blobs before checkpointing and exiting. */
  gracePeriod: z.number().min(0).default(30),
  /** Artifacts (manifest trees) processed at once; blobs are bounded separately by `concurrency`. */
  artifactConcurrency: z.number().int().positive().default(32),
});

export const daemonSchema = z.strictObject({
  listen: z.string().default('127.0.0.1:8480'),
  /** Bearer token for the API; required when listening on anything but loopback. */
  token: z.string().optional(),
  /** Expected Authorization header value of Harbor's webhook policy ("Auth Header"). */
  webhookAuth: z.string().optional(),
  timezone: timezone.optional(),
  /** Executions kept in history. */
  historyLimit: z.number().int().positive().default(500),
});

export const configSchema = z
  .strictObject({
    registries: z.record(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/), registrySchema),
    transfer: transferSchema.default(() => transferSchema.parse({})),
    rules: z.array(ruleSchema).default([]),
    daemon: daemonSchema.optional(),
    /** Where the state lives: absent = SQLite in transfer.stateDir; `url` = a PostgreSQL database. */
    state: z
      .strictObject({
        url: z.string().regex(/^postgres(?:ql)?:\/\/.+/, 'expected a PostgreSQL URL, postgres://user:password@host:5432/database').optional(),
        /**
         * Seconds without a heartbeat after which a cooperating worker counts as dead: its leased
         * repositories and blob claims go to the others, and it no longer takes a share of the limits.
         */
        leaseTimeout: z.number().positive().max(3600).default(30),
        /** Cooperate with the other processes on this state.url (leases, blob claims, shared limits); false: run whole. */
        cooperate: z.boolean().default(true),
      })
      .optional(),
  })
  .superRefine((cfg, ctx) => {
    const names = new Set<string>();
    cfg.rules.forEach((rule, i) => {
      if (names.has(rule.name)) ctx.addIssue({ code: 'custom', path: ['rules', i, 'name'], message: `duplicate rule name "${rule.name}"` });
      names.add(rule.name);
      for (const key of ['source', 'destination'] as const) {
        if (!cfg.registries[rule[key]]) {
          ctx.addIssue({
            code: 'custom',
            path: ['rules', i, key],
            message: `unknown registry "${rule[key]}" (defined: ${Object.keys(cfg.registries).join(', ') || 'none'})`,
          });
        }
      }
    });
    for (const [name, reg] of Object.entries(cfg.registries)) {
      if (reg.kind === 'tcr' && !reg.tcr && !(reg.username && reg.password)) {
        ctx.addIssue({ code: 'custom', path: ['registries', name], message: 'a tcr registry needs username/password or tcr: {secretId, secretKey, region, instanceId}' });
      }
      if (reg.kind === 'swr' && !(reg.swr?.accessKey && reg.swr.secretKey) && !(reg.username && reg.password)) {
        ctx.addIssue({ code: 'custom', path: ['registries', name], message: 'an swr registry needs username/password or swr: {region, accessKey, secretKey}' });
      }
    }
  });

export type FerryConfig = z.output<typeof configSchema>;
export type FerryConfigInput = z.input<typeof configSchema>;
export type RegistryConfig = z.output<typeof registrySchema>;
export type RuleConfig = z.output<typeof ruleSchema>;
export type FiltersConfig = z.output<typeof filtersSchema>;
export type TransferConfig = z.output<typeof transferSchema>;
export type DaemonConfig = z.output<typeof daemonSchema>;
export type FlattenLevel = (typeof flattenLevels)[number];
export type ArtifactKind = (typeof kinds)[number];
