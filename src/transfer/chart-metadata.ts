// Chart.yaml (and requirements.yaml) → helm's chart.Metadata, as `helm push` writes it into the OCI
// chart's config (pkg/chart/metadata.go, after helm's loader rules). Also ChartError, which every
// chart module throws.
import { parse as parseYaml } from 'yaml';
import { UnsupportedContentError } from '../registry/errors.js';

/** A chart that cannot be converted: corrupt archive, no Chart.yaml, no name or version, too large. */
export class ChartError extends UnsupportedContentError {
  override name = 'ChartError';
}

type Yaml = Record<string, unknown>;

function parseYamlDoc(data: Buffer, file: string): Yaml {
  let doc: unknown;
  try {
    doc = parseYaml(data.toString('utf8'));
  } catch (err) {
    throw new ChartError(`cannot load ${file}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ChartError(`cannot load ${file}: not a mapping`);
  return doc as Yaml;
}

/** helm's sanitizeString: whitespace becomes a space, non-printable characters go. */
function sanitize(s: string): string {
  return s.replace(/\s/gu, ' ').replace(/[\p{C}]/gu, '');
}

/**
 * A scalar for a Go string field, as sigs.k8s.io/yaml converts it (numbers and booleans become their
 * text: `appVersion: 1.10` is "1.1", as helm reads it); null is empty; anything else fails.
 */
function str(v: unknown, field: string): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw new ChartError(`Chart.yaml: ${field} must be a string`);
}

function strList(v: unknown, field: string): string[] {
  if (v === null || v === undefined) return [];
  if (!Array.isArray(v)) throw new ChartError(`Chart.yaml: ${field} must be a list`);
  return v.map((x, i) => str(x, `${field}[${i}]`));
}

/** Go json.Marshal of a map: keys sorted. */
export function sortedKeys<T>(o: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]!]));
}

/** interface{} values (import-values items) as Go marshals them: map keys sorted at every level. */
function goValue(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(goValue);
  if (v && typeof v === 'object') return sortedKeys(Object.fromEntries(Object.entries(v).map(([k, x]) => [k, goValue(x)])));
  return v;
}

function dependency(d: unknown, i: number): Record<string, unknown> {
  if (!d || typeof d !== 'object' || Array.isArray(d)) throw new ChartError('Chart.yaml: dependencies must not contain empty or null nodes');
  const y = d as Yaml;
  const out: Record<string, unknown> = {};
  out.name = sanitize(str(y.name, `dependencies[${i}].name`)); // no omitempty in helm
  const version = sanitize(str(y.version, `dependencies[${i}].version`));
  if (version) out.version = version;
  out.repository = sanitize(str(y.repository, `dependencies[${i}].repository`)); // no omitempty
  const condition = sanitize(str(y.condition, `dependencies[${i}].condition`));
  if (condition) out.condition = condition;
  const tags = strList(y.tags, `dependencies[${i}].tags`).map(sanitize);
  if (tags.length) out.tags = tags;
  if (y.enabled === true) out.enabled = true;
  for (const key of ['import-values', 'export-values']) {
    const v = y[key];
    if (v === null || v === undefined) continue;
    if (!Array.isArray(v)) throw new ChartError(`Chart.yaml: dependencies[${i}].${key} must be a list`);
    if (v.length) out[key] = v.map(goValue);
  }
  const alias = str(y.alias, `dependencies[${i}].alias`);
  if (alias) out.alias = alias;
  return out;
}

/**
 * helm's chart.Metadata (pkg/chart/metadata.go) from Chart.yaml (and requirements.yaml, whose
 * `dependencies` helm's loader reads into the same struct), as the object `helm push` marshals: the
 * struct's field order, empty fields left out. Requires name and version.
 */
export function chartMetadata(chartYaml: Buffer, requirementsYaml?: Buffer): Record<string, unknown> {
  const y = parseYamlDoc(chartYaml, 'Chart.yaml');
  if (requirementsYaml) {
    const r = parseYamlDoc(requirementsYaml, 'requirements.yaml');
    if (r.dependencies !== undefined) y.dependencies = r.dependencies;
  }
  const s = (field: string, clean = true): string => {
    const v = str(y[field], field);
    return clean ? sanitize(v) : v;
  };
  const name = s('name');
  const version = s('version', false);
  if (!name.trim()) throw new ChartError('Chart.yaml has no name');
  if (!version.trim()) throw new ChartError(`Chart.yaml of ${name} has no version`);
  if (name === '.' || name === '..' || name.includes('/') || name.includes('\\')) throw new ChartError(`Chart.yaml: chart name "${name}" is invalid`);
  const type = s('type', false);
  if (type !== '' && type !== 'application' && type !== 'library') throw new ChartError('Chart.yaml: type must be application or library');

  const m: Record<string, unknown> = {};
  const put = (key: string, value: unknown) => {
    if (value === '' || value === undefined || value === false || (Array.isArray(value) && value.length === 0)) return;
    if (value && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 0) return;
    m[key] = value;
  };
  put('name', name);
  put('home', s('home'));
  put('sources', strList(y.sources, 'sources').map(sanitize));
  put('version', version);
  put('description', s('description'));
  put('keywords', strList(y.keywords, 'keywords').map(sanitize));
  if (y.maintainers !== null && y.maintainers !== undefined) {
    if (!Array.isArray(y.maintainers)) throw new ChartError('Chart.yaml: maintainers must be a list');
    put(
      'maintainers',
      y.maintainers.map((x, i) => {
        if (!x || typeof x !== 'object' || Array.isArray(x)) throw new ChartError('Chart.yaml: maintainers must not contain empty or null nodes');
        const mt = x as Yaml;
        const out: Record<string, string> = {};
        for (const k of ['name', 'email', 'url']) {
          const v = sanitize(str(mt[k], `maintainers[${i}].${k}`));
          if (v) out[k] = v;
        }
        return out;
      }),
    );
  }
  put('icon', s('icon'));
  put('apiVersion', s('apiVersion', false) || 'v1'); // helm's loader: no apiVersion means a v1 chart
  put('condition', s('condition'));
  put('tags', s('tags'));
  put('appVersion', s('appVersion'));
  if (y.deprecated !== null && y.deprecated !== undefined && typeof y.deprecated !== 'boolean') throw new ChartError('Chart.yaml: deprecated must be true or false');
  put('deprecated', y.deprecated === true);
  if (y.annotations !== null && y.annotations !== undefined) {
    if (typeof y.annotations !== 'object' || Array.isArray(y.annotations)) throw new ChartError('Chart.yaml: annotations must be a mapping');
    put('annotations', sortedKeys(Object.fromEntries(Object.entries(y.annotations as Yaml).map(([k, v]) => [k, str(v, `annotations.${k}`)]))));
  }
  put('kubeVersion', s('kubeVersion'));
  if (y.dependencies !== null && y.dependencies !== undefined) {
    if (!Array.isArray(y.dependencies)) throw new ChartError('Chart.yaml: dependencies must be a list');
    put('dependencies', y.dependencies.map(dependency));
  }
  put('type', type);
  return m;
}
