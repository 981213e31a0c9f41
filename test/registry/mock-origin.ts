// A scripted HTTP origin on undici's MockAgent: every request to the origin goes to one handler and
// is recorded (method, path, headers), so tests can say exactly who received credentials.
import { Readable } from 'node:stream';
import { MockAgent } from 'undici';

export interface SeenRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string | undefined;
}

export interface MockAnswer {
  status: number;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer | object;
}

export type MockHandler = (req: SeenRequest) => MockAnswer;

export function mockAgent(): MockAgent {
  const agent = new MockAgent();
  agent.disableNetConnect();
  return agent;
}

function normalizeHeaders(h: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!h) return out;
  if (Array.isArray(h)) {
    for (let i = 0; i + 1 < h.length; i += 2) out[String(h[i]).toLowerCase()] = String(h[i + 1]);
  } else if (h instanceof Headers) {
    h.forEach((v, k) => (out[k.toLowerCase()] = v));
  } else {
    for (const [k, v] of Object.entries(h as Record<string, unknown>)) if (v !== undefined) out[k.toLowerCase()] = String(v);
  }
  return out;
}

/** Routes every request to `origin` through `handler`; returns the list of requests seen there. */
export function mockOrigin(agent: MockAgent, origin: string, handler: MockHandler): SeenRequest[] {
  const seen: SeenRequest[] = [];
  agent
    .get(origin)
    .intercept({ path: () => true, method: () => true })
    .reply((opts) => {
      const body = typeof opts.body === 'string' ? opts.body : Buffer.isBuffer(opts.body) ? opts.body.toString('utf8') : opts.body instanceof Readable ? '<stream>' : undefined;
      const req: SeenRequest = { method: opts.method, path: opts.path, headers: normalizeHeaders(opts.headers), body };
      seen.push(req);
      const a = handler(req);
      const data = a.body === undefined ? '' : typeof a.body === 'string' || Buffer.isBuffer(a.body) ? a.body : JSON.stringify(a.body);
      return { statusCode: a.status, data, responseOptions: { headers: a.headers ?? {} } };
    })
    .persist();
  return seen;
}
