// Harbor webhooks: parsing Harbor's payloads (the default format and CloudEvents) into what to copy
// or delete, and choosing the rules an event concerns.
//
// Default format (goharbor/harbor src/pkg/notifier/model/event.go):
//   { "type": "PUSH_ARTIFACT", "occur_at": 1700000000, "operator": "admin",
//     "event_data": { "resources": [ { "digest": "sha256:…", "tag": "v1", "resource_url": "harbor.example.com/library/app:v1" } ],
//                     "repository": { "name": "app", "namespace": "library", "repo_full_name": "library/app", "repo_type": "private" } } }
// CloudEvents format (Harbor >= 2.8): { "specversion": "1.0", "type": "harbor.artifact.pushed", "operator": …, "data": { "resources": […], "repository": {…} } }
// Chart events of ChartMuseum (Harbor <= 2.7): UPLOAD_CHART / DELETE_CHART, one resource per version
// with `tag` = the chart version and `resource_url` = "<external URL>/chartrepo/<project>/charts/<name>-<version>.tgz".
//
// Which rules: enabled rules with `trigger: event` whose source registry is the Harbor that sent the
// event, i.e. whose source URL host (port included, default ports ignored) equals the host of the
// resources' resource_url. When no resource carries a usable resource_url the host is unknown and every
// enabled event-triggered rule is considered. Either way the rule's own filters decide what is copied.
import type { FerryConfig, RuleConfig } from '../config/schema.js';
import type { SourceArtifact } from '../plan/types.js';
import type { DeleteRequest } from './execution.js';

export class WebhookError extends Error {
  override name = 'WebhookError';
}

export const HANDLED_EVENTS = ['PUSH_ARTIFACT', 'DELETE_ARTIFACT', 'UPLOAD_CHART', 'DELETE_CHART'] as const;
export type HandledEvent = (typeof HANDLED_EVENTS)[number];

/** Known Harbor event types (for metrics labels; anything else counts as "other"). */
const KNOWN_EVENTS = new Set<string>([
  ...HANDLED_EVENTS,
  'PULL_ARTIFACT',
  'DOWNLOAD_CHART',
  'SCANNING_COMPLETED',
  'SCANNING_FAILED',
  'SCANNING_STOPPED',
  'QUOTA_EXCEED',
  'QUOTA_WARNING',
  'REPLICATION',
  'TAG_RETENTION',
]);

const CLOUD_EVENT_TYPES: Record<string, string> = {
  'harbor.artifact.pushed': 'PUSH_ARTIFACT',
  'harbor.artifact.deleted': 'DELETE_ARTIFACT',
  'harbor.artifact.pulled': 'PULL_ARTIFACT',
  'harbor.chart.uploaded': 'UPLOAD_CHART',
  'harbor.chart.deleted': 'DELETE_CHART',
  'harbor.chart.downloaded': 'DOWNLOAD_CHART',
  'harbor.scan.completed': 'SCANNING_COMPLETED',
  'harbor.scan.failed': 'SCANNING_FAILED',
  'harbor.scan.stopped': 'SCANNING_STOPPED',
  'harbor.quota.exceed': 'QUOTA_EXCEED',
  'harbor.quota.warning': 'QUOTA_WARNING',
  'harbor.replication.status.changed': 'REPLICATION',
  'harbor.tag_retention.finished': 'TAG_RETENTION',
};

const REPOSITORY = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
/** Chart versions are SemVer 2 (may carry "+build"); the OCI tag replaces "+" with "_" as helm does. */
const CHART_VERSION = /^[0-9A-Za-z][0-9A-Za-z.+_-]{0,127}$/;

export interface HarborResource {
  digest?: string | undefined;
  tag?: string | undefined;
  /** host[:port] of resource_url, lower-case, without a default port; undefined when absent or unusable. */
  host?: string | undefined;
}

export interface HarborEvent {
  /** Harbor's type name (CloudEvents types mapped to it). */
  type: string;
  handled: boolean;
  operator?: string | undefined;
  occurAt?: number | undefined;
  /** Full repository path, e.g. "library/app" (for charts "<project>/<chart>"). */
  repository: string;
  /** Harbor project (namespace). */
  project?: string | undefined;
  resources: HarborResource[];
}

/** Metrics label for an event type: known names as they are, anything else "other" (bounded cardinality). */
export function eventLabel(type: string | undefined): string {
  return type && KNOWN_EVENTS.has(type) ? type : 'other';
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function optionalString(obj: Record<string, unknown>, key: string, where: string): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new WebhookError(`${where}.${key}: expected a string`);
  return v;
}

/** Parses a Harbor webhook body (already JSON-decoded). Throws WebhookError (→ 400) when malformed. */
export function parseHarborEvent(body: unknown): HarborEvent {
  if (!isObject(body)) throw new WebhookError('expected a JSON object');
  let type: string;
  let data: unknown;
  let operator: unknown = body.operator;
  let occurAt: unknown = body.occur_at;
  if (typeof body.specversion === 'string') {
    if (typeof body.type !== 'string') throw new WebhookError('CloudEvent without a "type"');
    type = CLOUD_EVENT_TYPES[body.type] ?? body.type;
    data = body.data;
    if (typeof body.time === 'string' && occurAt === undefined) occurAt = Math.floor(Date.parse(body.time) / 1000);
    // Some senders wrap the default payload inside the CloudEvent's data.
    if (isObject(data) && isObject(data.event_data)) {
      operator ??= data.operator;
      data = data.event_data;
    }
  } else {
    if (typeof body.type !== 'string' || !body.type) throw new WebhookError('missing "type"');
    type = body.type;
    data = body.event_data;
  }
  const handled = (HANDLED_EVENTS as readonly string[]).includes(type);
  if (!handled) {
    // Not ours to act on; no need to look further.
    return { type, handled, repository: '', resources: [] };
  }
  if (!isObject(data)) throw new WebhookError(`${type}: missing "event_data"`);
  const repo = data.repository;
  if (!isObject(repo)) throw new WebhookError(`${type}: missing "event_data.repository"`);
  const project = optionalString(repo, 'namespace', 'event_data.repository');
  const name = optionalString(repo, 'name', 'event_data.repository');
  const repository = optionalString(repo, 'repo_full_name', 'event_data.repository') ?? (project && name ? `${project}/${name}` : undefined);
  if (!repository) throw new WebhookError(`${type}: event_data.repository needs repo_full_name (or namespace and name)`);
  if (!REPOSITORY.test(repository)) throw new WebhookError(`${type}: invalid repository name ${JSON.stringify(repository)}`);
  if (!Array.isArray(data.resources) || data.resources.length === 0) throw new WebhookError(`${type}: "event_data.resources" must be a non-empty list`);
  if (data.resources.length > 1000) throw new WebhookError(`${type}: too many resources (${data.resources.length})`);
  const chart = type === 'UPLOAD_CHART' || type === 'DELETE_CHART';
  const resources = data.resources.map((r: unknown, i: number): HarborResource => {
    const where = `event_data.resources[${i}]`;
    if (!isObject(r)) throw new WebhookError(`${where}: expected an object`);
    const digest = optionalString(r, 'digest', where);
    const tag = optionalString(r, 'tag', where);
    const url = optionalString(r, 'resource_url', where);
    if (digest !== undefined && !DIGEST.test(digest)) throw new WebhookError(`${where}.digest: invalid digest ${JSON.stringify(digest)}`);
    if (tag !== undefined && !(chart ? CHART_VERSION : TAG).test(tag) && !DIGEST.test(tag)) throw new WebhookError(`${where}.tag: invalid ${chart ? 'chart version' : 'tag'} ${JSON.stringify(tag)}`);
    if (!digest && !tag) throw new WebhookError(`${where}: needs a digest or a tag`);
    if (chart && !tag) throw new WebhookError(`${where}: a chart event needs the version in "tag"`);
    return { digest, tag, host: url ? resourceHost(url) : undefined };
  });
  return {
    type,
    handled,
    operator: typeof operator === 'string' ? operator : undefined,
    occurAt: typeof occurAt === 'number' && Number.isFinite(occurAt) ? occurAt : undefined,
    repository,
    project,
    resources,
  };
}

/**
 * host[:port] of a resource_url, which has no scheme for artifacts ("harbor.example.com/library/app:v1")
 * and Harbor's external URL, scheme included, for charts ("https://harbor.example.com/chartrepo/…").
 */
export function resourceHost(resourceUrl: string): string | undefined {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(resourceUrl) ? resourceUrl : `https://${resourceUrl}`;
  try {
    const u = new URL(withScheme);
    return u.host ? u.host.toLowerCase() : undefined;
  } catch {
    return undefined;
  }
}

/** host[:port] of a registry URL without its scheme's default port, lower-case. */
export function registryHost(url: string): string | undefined {
  try {
    return new URL(url).host.toLowerCase();
  } catch {
    return undefined;
  }
}

function sameHost(a: string, b: string): boolean {
  const strip = (h: string) => h.replace(/:(?:443|80)$/, '');
  return strip(a) === strip(b);
}

/** The enabled event-triggered rules this event concerns (see the header for the host rule). */
export function matchRules(config: FerryConfig, event: HarborEvent): RuleConfig[] {
  const hosts = new Set(event.resources.map((r) => r.host).filter((h): h is string => !!h));
  return config.rules.filter((rule) => {
    if (!rule.enabled || rule.trigger !== 'event') return false;
    if (!hosts.size) return true;
    const source = config.registries[rule.source];
    const host = source ? registryHost(source.url) : undefined;
    return !!host && [...hosts].some((h) => sameHost(h, host));
  });
}

/** What a push event asks to copy. */
export function pushedArtifacts(event: HarborEvent): SourceArtifact[] {
  const chart = event.type === 'UPLOAD_CHART';
  return event.resources.map((r) => {
    if (chart) {
      const version = r.tag!;
      const name = event.repository.slice(event.repository.lastIndexOf('/') + 1);
      const project = event.project ?? event.repository.slice(0, event.repository.lastIndexOf('/'));
      return { repository: event.repository, tags: [version.replace(/\+/g, '_')], kind: 'chart', chartMuseum: { project, name, version } };
    }
    // `tag` is the digest when the artifact has no tag.
    const tag = r.tag && !DIGEST.test(r.tag) ? r.tag : undefined;
    const digest = r.digest ?? (r.tag && DIGEST.test(r.tag) ? r.tag : undefined);
    return { repository: event.repository, ...(digest ? { digest } : {}), tags: tag ? [tag] : [] };
  });
}

/** What a delete event asks to delete at the destination (rules with deleteRemote only). */
export function deletedArtifacts(event: HarborEvent): DeleteRequest[] {
  const chart = event.type === 'DELETE_CHART';
  return event.resources.map((r) => {
    const tag = r.tag && !DIGEST.test(r.tag) ? (chart ? r.tag.replace(/\+/g, '_') : r.tag) : undefined;
    const digest = r.digest ?? (r.tag && DIGEST.test(r.tag) ? r.tag : undefined);
    return { repository: event.repository, digest, tag, ...(chart ? { chart: true } : {}) };
  });
}

export function isDeletion(type: string): boolean {
  return type === 'DELETE_ARTIFACT' || type === 'DELETE_CHART';
}
