// deploy/kubernetes/ without a cluster: every file parses, every kustomization's resources exist, each
// overlay yields the objects it should, and the objects agree with each other and with Ferry (the
// ConfigMap's config validates, the daemon may listen on 0.0.0.0 with its token, probes hit the
// daemon's port, the Indexed Job's --shards equals its completions, referenced names exist). The
// PostgreSQL variants (shared-state/ patches base/; workers/, daemon-ha/): the config is base's plus
// state.url from the Secret, the workers are one plain Job with parallelism N and no index, the
// daemon runs as replicas without a volume.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { checkDaemonConfig } from '../../src/daemon/settings.js';
import { resolveShard } from '../../src/plan/shard.js';
import { REPO_ROOT } from '../cli/run.js';

const ROOT = join(REPO_ROOT, 'deploy/kubernetes');

// Loose shapes: what the checks below read.
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}
interface Container {
  name: string;
  image: string;
  args: string[];
  env?: { name: string; value?: string }[];
  envFrom?: { secretRef?: { name: string } }[];
  ports?: { name: string; containerPort: number }[];
  livenessProbe?: { httpGet: { path: string; port: string | number } };
  readinessProbe?: { httpGet: { path: string; port: string | number } };
  startupProbe?: { httpGet: { path: string; port: string | number } };
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
  securityContext: Record<string, unknown>;
}
interface PodSpec {
  restartPolicy?: string;
  securityContext: { runAsNonRoot: boolean; runAsUser: number; fsGroup: number };
  containers: Container[];
  volumes: { name: string; configMap?: { name: string }; persistentVolumeClaim?: { claimName: string }; emptyDir?: object }[];
}
interface PodTemplate {
  metadata: { labels: Record<string, string> };
  spec: PodSpec;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? yamlFiles(p) : /\.ya?ml$/.test(e) ? [p] : [];
  });
}

function load(file: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  for (const d of docs) expect(d.errors, relative(ROOT, file)).toEqual([]);
  return docs.map((d) => d.toJS()).filter((d) => d != null);
}

interface Kustomization {
  namespace?: string;
  resources: string[];
  /** Strategic-merge patches (here: of the ConfigMap's data and the Secret's stringData). */
  patches?: { path: string }[];
  images?: { name: string; newName?: string; newTag?: string }[];
}

/** The objects a kustomization yields (resources only, recursively: enough for these checks). */
function build(dir: string, seen = new Set<string>()): K8sObject[] {
  const k = load(join(dir, 'kustomization.yaml'))[0] as Kustomization;
  const out: K8sObject[] = [];
  for (const r of k.resources) {
    const p = join(dir, r);
    expect(existsSync(p), `${relative(ROOT, dir)}: resource ${r}`).toBe(true);
    if (statSync(p).isDirectory()) out.push(...build(p, seen));
    else out.push(...(load(p) as K8sObject[]));
  }
  const unique = new Map(out.map((o) => [`${o.kind}/${o.metadata.name}`, o]));
  for (const patch of k.patches ?? []) {
    for (const doc of load(join(dir, patch.path)) as K8sObject[]) {
      const key = `${doc.kind}/${doc.metadata.name}`;
      expect(unique.has(key), `${relative(ROOT, dir)}: patch ${patch.path} targets ${key}`).toBe(true);
      unique.set(key, merge(unique.get(key)!, doc) as K8sObject);
    }
  }
  return [...unique.values()];
}

/** Strategic merge as far as these patches need it: maps merge key by key, anything else is replaced. */
function merge(target: unknown, patch: unknown): unknown {
  if (typeof target !== 'object' || target === null || Array.isArray(target) || typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = { ...(target as Record<string, unknown>) };
  for (const [k, v] of Object.entries(patch)) out[k] = merge(out[k], v);
  return out;
}

function kustomization(dir: string): Kustomization {
  return load(join(ROOT, dir, 'kustomization.yaml'))[0] as Kustomization;
}

function one<T = K8sObject>(objects: K8sObject[], kind: string): T {
  const found = objects.filter((o) => o.kind === kind);
  expect(found, kind).toHaveLength(1);
  return found[0] as T;
}

function pod(obj: K8sObject): PodTemplate {
  const spec = obj.spec as { template?: PodTemplate; jobTemplate?: { spec: { template: PodTemplate } } };
  return spec.template ?? spec.jobTemplate!.spec.template;
}

const overlays = { daemon: 'daemon', cronjob: 'cronjob', migration: 'migration', workers: 'workers', daemonHa: 'daemon-ha' } as const;
const built = Object.fromEntries(Object.entries(overlays).map(([k, dir]) => [k, build(join(ROOT, dir))])) as Record<keyof typeof overlays, K8sObject[]>;
const base = build(join(ROOT, 'base'));
const configMap = one<K8sObject & { data: Record<string, string> }>(base, 'ConfigMap');
const secret = one<K8sObject & { stringData: Record<string, string> }>(base, 'Secret');
const configText = configMap.data['ferry.yaml']!;
const env = { ...secret.stringData };
const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
const sharedState = build(join(ROOT, 'shared-state'));
const sharedConfigText = one<K8sObject & { data: Record<string, string> }>(sharedState, 'ConfigMap').data['ferry.yaml']!;
const sharedEnv = { ...one<K8sObject & { stringData: Record<string, string> }>(sharedState, 'Secret').stringData };

describe('deploy/kubernetes', () => {
  it('every file parses; every object has apiVersion, kind and metadata.name', () => {
    const files = yamlFiles(ROOT);
    expect(files.length).toBeGreaterThanOrEqual(10);
    for (const file of files) {
      for (const doc of load(file) as K8sObject[]) {
        expect(doc.apiVersion, relative(ROOT, file)).toMatch(/^[a-z./0-9]+\/v\d+(beta\d+)?$|^v1$/);
        expect(doc.kind, relative(ROOT, file)).toMatch(/^[A-Z][A-Za-z]+$/);
        if (doc.kind !== 'Kustomization') expect(doc.metadata?.name, relative(ROOT, file)).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      }
    }
  });

  it('the default kustomization is the daemon; each overlay yields its objects, sets the namespace and the image', () => {
    expect(kustomization('.').resources).toEqual(['daemon']);
    const kinds = (objs: K8sObject[]) => objs.map((o) => o.kind).sort();
    expect(kinds(built.daemon)).toEqual(['ConfigMap', 'Deployment', 'Namespace', 'PersistentVolumeClaim', 'Secret', 'Service']);
    expect(kinds(built.cronjob)).toEqual(['ConfigMap', 'CronJob', 'Namespace', 'PersistentVolumeClaim', 'Secret']);
    expect(kinds(built.migration)).toEqual(['ConfigMap', 'Job', 'Namespace', 'Secret']);
    expect(kinds(built.workers)).toEqual(['ConfigMap', 'Job', 'Namespace', 'Secret']);
    expect(kinds(built.daemonHa)).toEqual(['ConfigMap', 'Deployment', 'Namespace', 'PodDisruptionBudget', 'Secret', 'Service']);
    // The PostgreSQL overlays get the patched config and Secret; the others base's.
    for (const name of ['workers', 'daemonHa'] as const) expect(one<K8sObject & { data: Record<string, string> }>(built[name], 'ConfigMap').data['ferry.yaml']).toBe(sharedConfigText);
    for (const name of ['daemon', 'cronjob', 'migration'] as const) expect(one<K8sObject & { data: Record<string, string> }>(built[name], 'ConfigMap').data['ferry.yaml']).toBe(configText);
    const ns = one(base, 'Namespace').metadata.name;
    for (const dir of Object.values(overlays)) {
      const k = kustomization(dir);
      expect(k.namespace).toBe(ns);
      expect(k.images?.map((i) => i.name)).toEqual(['ferry']);
    }
  });

  it('the ConfigMap config is valid Ferry config with the Secret as environment, and the daemon may listen on 0.0.0.0', () => {
    const doc = parseAllDocuments(configText);
    // The Secret's placeholders are refused by the daemon: a forgotten Secret must not go live.
    const placeholder = parseConfig(doc[0]!.toJS(), 'ferry.yaml', env);
    expect(() => checkDaemonConfig(placeholder)).toThrow(/daemon\.token: still the placeholder[\s\S]*daemon\.webhookAuth: still the placeholder/);
    const real = { ...env, FERRY_API_TOKEN: '3f1c0a9e7b5d42c8a61e', WEBHOOK_AUTH: 'Bearer 9d2e4f6a8b0c1d3e5f7a' };
    const config = parseConfig(doc[0]!.toJS(), 'ferry.yaml', real);
    expect(config.daemon).toMatchObject({ listen: '0.0.0.0:8480', token: real.FERRY_API_TOKEN, webhookAuth: real.WEBHOOK_AUTH });
    expect(() => checkDaemonConfig(config)).not.toThrow();
    expect(config.transfer.bandwidth).toBe(200e6 / 8); // ${FERRY_BANDWIDTH:-200Mbps}
    // Each ${VAR} the config uses comes from the Secret, or has a default.
    for (const m of configText.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}/g)) {
      if (!m[2]) expect(Object.keys(env), m[1]).toContain(m[1]);
    }
  });

  it('every workload runs the image as the Dockerfile user, mounts the config and state, gets the Secret, uses defined rules', () => {
    const uid = Number(/^USER (\d+)/m.exec(dockerfile)?.[1]);
    expect(uid).toBe(10001);
    const rules = (parseAllDocuments(configText)[0]!.toJS() as { rules: { name: string }[] }).rules.map((r) => r.name);
    for (const [name, objects] of Object.entries(built)) {
      const workload = objects.find((o) => ['Deployment', 'CronJob', 'Job'].includes(o.kind))!;
      const t = pod(workload);
      expect(t.spec.securityContext, name).toMatchObject({ runAsNonRoot: true, runAsUser: uid, fsGroup: uid });
      const [c] = t.spec.containers;
      expect(c!.image, name).toBe('ferry');
      expect(c!.args.slice(1, 3), name).toEqual(['--config', '/config/ferry.yaml']);
      expect(c!.securityContext, name).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true });
      expect(c!.envFrom?.map((e) => e.secretRef?.name), name).toEqual([secret.metadata.name]);
      expect(c!.env?.find((e) => e.name === 'FERRY_STATE_DIR')?.value, name).toBe('/state');
      const mounts = Object.fromEntries(c!.volumeMounts.map((m) => [m.mountPath, m.name]));
      expect(Object.keys(mounts).sort(), name).toEqual(['/config', '/state', '/tmp']);
      const volumes = Object.fromEntries(t.spec.volumes.map((v) => [v.name, v]));
      expect(volumes[mounts['/config']!]!.configMap?.name, name).toBe(configMap.metadata.name);
      const claim = volumes[mounts['/state']!]!.persistentVolumeClaim?.claimName;
      if (claim) expect(objects.some((o) => o.kind === 'PersistentVolumeClaim' && o.metadata.name === claim), `${name}: PVC ${claim}`).toBe(true);
      const ruleArg = c!.args.indexOf('--rule');
      if (ruleArg >= 0) expect(rules, name).toContain(c!.args[ruleArg + 1]);
    }
  });

  it('daemon: `ferry daemon`, probes on /healthz and /readyz at the listen port, a Service in front', () => {
    const deployment = one(built.daemon, 'Deployment');
    const t = pod(deployment);
    const c = t.spec.containers[0]!;
    expect(c.args).toEqual(['daemon', '--config', '/config/ferry.yaml']);
    expect(c.ports).toEqual([{ name: 'http', containerPort: 8480 }]);
    expect(c.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(c.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'http' });
    expect(c.startupProbe?.httpGet.path).toBe('/healthz');
    expect((deployment.spec as { replicas: number; strategy: { type: string } }).replicas).toBe(1);
    expect((deployment.spec as { strategy: { type: string } }).strategy.type).toBe('Recreate');
    const selector = (deployment.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels;
    expect(t.metadata.labels).toMatchObject(selector);

    const service = one<K8sObject & { spec: { selector: Record<string, string>; ports: { port: number; targetPort: string }[] } }>(built.daemon, 'Service');
    expect(t.metadata.labels).toMatchObject(service.spec.selector);
    expect(service.spec.ports).toEqual([{ name: 'http', port: 8480, targetPort: 'http' }]);
  });

  it('shared-state: the config is base/\'s plus state.url from the Secret (FERRY_STATE_URL); the Secret keeps its other keys', () => {
    const plain = parseAllDocuments(configText)[0]!.toJS() as Record<string, unknown>;
    const shared = parseAllDocuments(sharedConfigText)[0]!.toJS() as Record<string, unknown>;
    const { state, ...rest } = shared;
    expect(rest).toEqual(plain);
    expect(state).toEqual({ url: '${FERRY_STATE_URL}' });
    expect(Object.keys(sharedEnv).sort()).toEqual([...Object.keys(env), 'FERRY_STATE_URL'].sort());
    const real = { ...sharedEnv, FERRY_API_TOKEN: '3f1c0a9e7b5d42c8a61e', WEBHOOK_AUTH: 'Bearer 9d2e4f6a8b0c1d3e5f7a' };
    const config = parseConfig(shared, 'ferry.yaml', real);
    expect(config.state?.url).toBe(sharedEnv.FERRY_STATE_URL);
    expect(config.state?.url).toMatch(/^postgres:\/\/ferry:CHANGE-ME@[^/]+:5432\/ferry$/);
    expect(() => checkDaemonConfig(config)).not.toThrow();
    for (const m of sharedConfigText.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}/g)) {
      if (!m[2]) expect(Object.keys(sharedEnv), m[1]).toContain(m[1]);
    }
  });

  it('workers: one Job, parallelism N, no index and no shard: every pod runs the same `ferry sync` on state.url', () => {
    const job = one<K8sObject & { spec: Record<string, unknown> & { parallelism: number } }>(built.workers, 'Job');
    expect(job.spec.parallelism).toBeGreaterThanOrEqual(2);
    expect(job.spec.completionMode).toBeUndefined();
    expect(job.spec.completions).toBeUndefined(); // a work queue: complete when the pods exited 0
    const t = pod(job);
    expect(['Never', 'OnFailure']).toContain(t.spec.restartPolicy);
    const c = t.spec.containers[0]!;
    expect(c.args).toEqual(['sync', '--config', '/config/ferry.yaml', '--rule', 'migrate', '--output', 'json']);
    expect(c.args.some((a) => a.startsWith('--shard'))).toBe(false);
    expect(c.env?.map((e) => e.name)).not.toContain('FERRY_SHARD');
    // No persistent volume: the state is the database's.
    expect(t.spec.volumes.some((v) => v.persistentVolumeClaim)).toBe(false);
    // transfer.bandwidth is the whole run's (the live pods share it).
    const bw = c.env?.find((e) => e.name === 'FERRY_BANDWIDTH')?.value;
    const config = parseConfig(parseAllDocuments(sharedConfigText)[0]!.toJS(), 'ferry.yaml', { ...sharedEnv, FERRY_BANDWIDTH: bw });
    expect(config.transfer.bandwidth).toBe(1e9 / 8);
    expect(config.state?.url).toMatch(/^postgres:/);
  });

  it('daemon-ha: replicas on the PostgreSQL state, rolling without a volume, a Service and a disruption budget over them', () => {
    const deployment = one(built.daemonHa, 'Deployment');
    const spec = deployment.spec as { replicas: number; strategy: { type: string }; selector: { matchLabels: Record<string, string> } };
    expect(spec.replicas).toBe(2);
    expect(spec.strategy.type).toBe('RollingUpdate');
    const t = pod(deployment);
    expect(t.spec.volumes.some((v) => v.persistentVolumeClaim)).toBe(false);
    const c = t.spec.containers[0]!;
    expect(c.args).toEqual(['daemon', '--config', '/config/ferry.yaml']);
    expect(c.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(c.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'http' });
    expect(t.metadata.labels).toMatchObject(spec.selector.matchLabels);
    const service = one<K8sObject & { spec: { selector: Record<string, string>; ports: { port: number; targetPort: string }[] } }>(built.daemonHa, 'Service');
    expect(t.metadata.labels).toMatchObject(service.spec.selector);
    expect(service.spec.ports).toEqual([{ name: 'http', port: 8480, targetPort: 'http' }]);
    const pdb = one<K8sObject & { spec: { minAvailable: number; selector: { matchLabels: Record<string, string> } } }>(built.daemonHa, 'PodDisruptionBudget');
    expect(pdb.spec.minAvailable).toBeLessThan(spec.replicas);
    expect(t.metadata.labels).toMatchObject(pdb.spec.selector.matchLabels);
  });

  it('cronjob: one run at a time, `ferry sync` with a JSON report', () => {
    const cron = one<K8sObject & { spec: { schedule: string; concurrencyPolicy: string } }>(built.cronjob, 'CronJob');
    expect(cron.spec.schedule.split(' ')).toHaveLength(5);
    expect(cron.spec.concurrencyPolicy).toBe('Forbid');
    const t = pod(cron);
    expect(['Never', 'OnFailure']).toContain(t.spec.restartPolicy);
    expect(t.spec.containers[0]!.args).toEqual(['sync', '--config', '/config/ferry.yaml', '--rule', 'nightly', '--output', 'json']);
  });

  it('migration: an Indexed Job whose pods take shards 0..N-1 of N = completions = parallelism', () => {
    const job = one<K8sObject & { spec: { completionMode: string; completions: number; parallelism: number } }>(built.migration, 'Job');
    expect(job.spec.completionMode).toBe('Indexed');
    expect(job.spec.parallelism).toBe(job.spec.completions);
    const t = pod(job);
    expect(['Never', 'OnFailure']).toContain(t.spec.restartPolicy);
    const args = t.spec.containers[0]!.args;
    expect(args[0]).toBe('sync');
    const shards = args[args.indexOf('--shards') + 1];
    expect(Number(shards)).toBe(job.spec.completions);
    // What each pod resolves, with the index Kubernetes sets:
    for (let i = 0; i < job.spec.completions; i++) {
      expect(resolveShard({ shards, env: { JOB_COMPLETION_INDEX: String(i) } })).toEqual({ index: i, count: job.spec.completions });
    }
    // Per-pod bandwidth through the config's ${FERRY_BANDWIDTH}.
    const bw = t.spec.containers[0]!.env?.find((e) => e.name === 'FERRY_BANDWIDTH')?.value;
    expect(parseConfig(parseAllDocuments(configText)[0]!.toJS(), 'ferry.yaml', { ...env, FERRY_BANDWIDTH: bw }).transfer.bandwidth).toBe(250e6 / 8);
  });

  // Where kubectl is installed, its kustomize (offline) builds every overlay into the same objects.
  const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0;
  it.runIf(kubectl)('kubectl kustomize builds every overlay into the objects checked above', () => {
    for (const [name, dir] of Object.entries(overlays)) {
      const out = spawnSync('kubectl', ['kustomize', join(ROOT, dir)], { encoding: 'utf8' });
      expect(out.status, `${dir}: ${out.stderr}`).toBe(0);
      const objects = parseAllDocuments(out.stdout).map((d) => d.toJS() as K8sObject);
      const ours = built[name as keyof typeof overlays];
      expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort(), dir).toEqual(ours.map((o) => `${o.kind}/${o.metadata.name}`).sort());
      const data = (objs: K8sObject[]) => (objs.find((o) => o.kind === 'ConfigMap') as K8sObject & { data: Record<string, string> }).data['ferry.yaml'];
      expect(data(objects), dir).toBe(data(ours));
    }
  });
});
