// A front end that gives a real registry (distribution 2.8, which has no Referrers API) the OCI 1.1
// referrers behaviour of newer registries, so both sides of Ferry's referrers code run against real
// storage:
//   - a manifest PUT whose body has a `subject` is forwarded; on success the front remembers the
//     referrer's descriptor (mediaType, digest, size, artifactType = artifactType or config.mediaType,
//     annotations) and, unless `subjectHeader: false`, answers with `OCI-Subject: <subject digest>`;
//   - GET /v2/<name>/referrers/<digest> answers 200 with an OCI index of those descriptors (an empty
//     index for an unknown subject, as the spec requires), optionally filtered by `artifactType`;
//     `api: false` makes it a 404 like distribution 2.8;
//   - everything else is passed through unchanged (the Host header is kept, so the registry's
//     Location headers point back at the front).
// Written independently of src/ (its own JSON handling and hashing). Listens on 127.0.0.1, port 0.
import { createHash } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { LOOPBACK, listenOnFreePort } from './ports.js';
import { closeServer, readBody } from './token-issuer.js';

export interface ReferrersFrontOptions {
  /** Answer manifest PUTs that carry a subject with OCI-Subject (default true). */
  subjectHeader?: boolean;
  /** Serve the Referrers API (default true). */
  api?: boolean;
}

export interface FrontDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface ReferrersFront {
  readonly url: string;
  readonly host: string;
  /** `<repository>@<subject digest>` → the referrers pushed through the front. */
  readonly referrers: Map<string, FrontDescriptor[]>;
  /** Every request: `${METHOD} ${path}` and the status answered. */
  readonly requests: { line: string; status: number }[];
  count(match: RegExp): number;
  stop(): Promise<void>;
}

const REFERRERS = /^\/v2\/(.+)\/referrers\/([a-z0-9]+:[a-f0-9]+)$/;
const MANIFEST_PUT = /^\/v2\/(.+)\/manifests\/([^/]+)$/;

export async function startReferrersFront(targetUrl: string, opts: ReferrersFrontOptions = {}): Promise<ReferrersFront> {
  const target = new URL(targetUrl);
  const referrers = new Map<string, FrontDescriptor[]>();
  const requests: { line: string; status: number }[] = [];

  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(String(err.message));
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://front');
    const line = `${req.method} ${url.pathname}${url.search}`;
    const log = (status: number) => requests.push({ line, status });

    let m = REFERRERS.exec(url.pathname);
    if (m && req.method === 'GET') {
      if (opts.api === false) {
        log(404);
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'NOT_FOUND', message: 'not found' }] }));
        return;
      }
      const wanted = url.searchParams.get('artifactType');
      const list = (referrers.get(`${m[1]}@${m[2]}`) ?? []).filter((d) => !wanted || d.artifactType === wanted);
      const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: list }));
      log(200);
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.index.v1+json', 'content-length': body.length, ...(wanted ? { 'oci-filters-applied': 'artifactType' } : {}) });
      res.end(body);
      return;
    }

    m = MANIFEST_PUT.exec(url.pathname);
    if (m && req.method === 'PUT') {
      const body = await readBody(req);
      const answer = await forward(req, body);
      let subject: string | undefined;
      if (answer.status === 201) {
        try {
          const doc = JSON.parse(body.toString('utf8')) as { subject?: { digest?: string }; artifactType?: string; config?: { mediaType?: string }; annotations?: Record<string, string> };
          if (doc.subject?.digest) {
            subject = doc.subject.digest;
            const d: FrontDescriptor = { mediaType: String(req.headers['content-type'] ?? ''), digest: `sha256:${createHash('sha256').update(body).digest('hex')}`, size: body.length };
            const artifactType = doc.artifactType ?? doc.config?.mediaType;
            if (artifactType) d.artifactType = artifactType;
            if (doc.annotations) d.annotations = doc.annotations;
            const key = `${m[1]}@${subject}`;
            const list = referrers.get(key) ?? [];
            if (!list.some((x) => x.digest === d.digest)) list.push(d);
            referrers.set(key, list);
          }
        } catch {
          // not JSON: nothing to remember
        }
      }
      const headers = { ...answer.headers };
      if (subject && opts.subjectHeader !== false) headers['oci-subject'] = subject;
      log(answer.status);
      res.writeHead(answer.status, headers);
      res.end(answer.body);
      return;
    }

    const body = req.method === 'GET' || req.method === 'HEAD' ? undefined : await readBody(req);
    const answer = await forward(req, body);
    log(answer.status);
    res.writeHead(answer.status, answer.headers);
    res.end(req.method === 'HEAD' ? undefined : answer.body);
  }

  function forward(req: IncomingMessage, body: Buffer | undefined): Promise<{ status: number; headers: Record<string, string | string[]>; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && k !== 'connection' && k !== 'keep-alive') headers[k] = v;
      if (body !== undefined) headers['content-length'] = String(body.length);
      const out = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers }, (upstream) => {
        const chunks: Buffer[] = [];
        upstream.on('data', (c: Buffer) => chunks.push(c));
        upstream.on('end', () => {
          const h: Record<string, string | string[]> = {};
          for (const [k, v] of Object.entries(upstream.headers)) if (v !== undefined && k !== 'connection' && k !== 'keep-alive' && k !== 'transfer-encoding') h[k] = v;
          resolve({ status: upstream.statusCode ?? 502, headers: h, body: Buffer.concat(chunks) });
        });
        upstream.on('error', reject);
      });
      out.on('error', reject);
      out.end(body);
    });
  }

  const port = await listenOnFreePort(server);
  return {
    url: `http://${LOOPBACK}:${port}`,
    host: `${LOOPBACK}:${port}`,
    referrers,
    requests,
    count: (match) => requests.filter((r) => match.test(r.line)).length,
    stop: () => closeServer(server),
  };
}
