// The one bounded body reader. Every small answer (manifests, JSON listings, tokens, API answers,
// error bodies, chart archives) is read through it; one overflow behaviour for all: the body is
// destroyed and a BodyTooLargeError names the limit.
import { Readable } from 'node:stream';
import { BodyTooLargeError } from '../registry/errors.js';
import type { BodyFactory, BodySource, HttpResponse } from './types.js';

export interface ReadBodyContext {
  /** Registry (config name) for the error. */
  registry: string;
  repository?: string | undefined;
  /** What was read, for the error ("manifest", "token answer", ...). */
  what?: string | undefined;
}

/** Reads a whole body of at most `limit` bytes; more is a BodyTooLargeError (the rest is not read). */
export async function readBody(res: Pick<HttpResponse, 'body' | 'statusCode'>, limit: number, ctx: ReadBodyContext): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) {
      res.body.destroy();
      throw new BodyTooLargeError(`${ctx.what ?? 'answer'} is larger than ${limit} bytes`, { registry: ctx.registry, repository: ctx.repository, status: res.statusCode, limit });
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

export async function readBodyText(res: Pick<HttpResponse, 'body' | 'statusCode'>, limit: number, ctx: ReadBodyContext): Promise<string> {
  return (await readBody(res, limit, ctx)).toString('utf8');
}

/** Reads at most `limit` bytes of an error body; never throws (an error answer must not hide behind a read failure). */
export async function readErrorText(res: Pick<HttpResponse, 'body'>, limit = 64 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      const room = limit - total;
      chunks.push(chunk.subarray(0, room));
      total += Math.min(chunk.length, room);
      if (total >= limit) {
        res.body.destroy();
        break;
      }
    }
  } catch {
    // a truncated error body is still worth its first bytes
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** A body already read, handed on with the part of undici's body API that callers use. */
export function bufferedBody(bytes: Buffer): HttpResponse['body'] {
  const stream = Readable.from(bytes.length ? [bytes] : []) as Readable & Record<string, unknown>;
  stream.dump = async () => {
    stream.resume();
  };
  stream.text = async () => bytes.toString('utf8');
  stream.json = async () => JSON.parse(bytes.toString('utf8')) as unknown;
  stream.arrayBuffer = async () => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  return stream as unknown as HttpResponse['body'];
}

/** The body of one attempt: a factory is called, anything else is sent as it is. */
export async function bodyForAttempt(body: BodySource | undefined): Promise<Exclude<BodySource, BodyFactory> | undefined> {
  return typeof body === 'function' ? await body() : body;
}
