// deploy/kubernetes/ without a cluster: every file parses, every kustomization's resources exist, each
// overlay yields the objects it should, and the objects agree with each other and with Ferry (the
// ConfigMap's config validates, the daemon may listen on 0.0.0.0 with its token, probes hit the
// daemon's port, the Indexed Job's --shards equals its completions, referenced names exist).
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
  return [...unique.values()];
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

const overlays = { daemon: 'daemon', cronjob: 'cronjob', migration: 'migration' } as const;
const built = Object.fromEntries(Object.entries(overlays).map(([k, dir]) => [k, build(join(ROOT, dir))])) as Record<keyof typeof overlays, K8sObject[]>;
const base = build(join(ROOT, 'base'));
const configMap = one<K8sObject & { data: Record<string, string> }>(base, 'ConfigMap');
const secret = one<K8sObject & { stringData: Record<string, string> }>(base, 'Secret');
const configText = configMap.data['ferry.yaml']!;
const env = { ...secret.stringData };
const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');

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
});
