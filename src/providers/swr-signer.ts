// Huawei Cloud / Open Telekom Cloud credentials for SWR.
//
// 1. Long-term registry login (OTC/Huawei docs "Obtaining a Long-Term Valid Login Command"):
//    username `<region>@<AK>`, password = lowercase hex HMAC-SHA256(key = SK, message = AK).
//
// 2. API request signing "SDK-HMAC-SHA256" (huaweicloud-sdk-go-v3 core/auth/signer, API Gateway docs):
//    CanonicalRequest = METHOD \n URI \n QUERY \n HEADERS \n SIGNED \n hex(sha256(body))
//    - URI: each path segment percent-encoded (RFC 3986 unreserved kept), always ending in "/";
//    - QUERY: keys sorted, values of a key sorted, both encoded the same way, `k=v` joined by "&";
//    - HEADERS: `name:trimmed value\n` per signed header (names lower-case, sorted) — note the block
//      ends with "\n", and the format adds another, so an empty line follows;
//    - SIGNED: the lower-case names joined by ";". The SDK signs every header it was given except
//      Content-Type; X-Sdk-Date must be signed (the gateway rejects requests where it is not).
//    StringToSign = SDK-HMAC-SHA256 \n <X-Sdk-Date> \n hex(sha256(CanonicalRequest))
//    Signature    = hex(HMAC-SHA256(SK, StringToSign))   (no key derivation, unlike TC3 / SigV4)
//    Authorization: SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<list>, Signature=<hex>
//    X-Sdk-Date: YYYYMMDDTHHMMSSZ (UTC); the gateway allows 15 minutes of skew.
import { createHash, createHmac } from 'node:crypto';

export const SDK_ALGORITHM = 'SDK-HMAC-SHA256';

/** Password of the long-term `docker login` command: hex HMAC-SHA256 keyed by SK over AK. */
export function swrLoginPassword(accessKey: string, secretKey: string): string {
  return createHmac('sha256', secretKey).update(accessKey, 'utf8').digest('hex');
}

/** Username of the long-term `docker login` command. */
export function swrLoginUsername(region: string, accessKey: string): string {
  return `${region}@${accessKey}`;
}

/** Percent-encoding of the Huawei signer: everything but A-Z a-z 0-9 - _ . ~ as %XX of UTF-8 bytes. */
export function sdkEscape(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The canonical URI: segments (decoded from the URL, then re-encoded) joined by "/", ending in "/". */
export function canonicalUri(pathname: string): string {
  const uri = pathname
    .split('/')
    .map((seg) => sdkEscape(safeDecode(seg)))
    .join('/');
  return uri.endsWith('/') ? uri : `${uri}/`;
}

/** The canonical query string from name → value(s). */
export function canonicalQueryString(params: Iterable<[string, string]>): string {
  const grouped = new Map<string, string[]>();
  for (const [k, v] of params) {
    const list = grouped.get(k) ?? [];
    list.push(v);
    grouped.set(k, list);
  }
  return [...grouped.keys()]
    .sort(compare)
    .flatMap((k) => grouped.get(k)!.sort(compare).map((v) => `${sdkEscape(k)}=${sdkEscape(v)}`))
    .join('&');
}

/** X-Sdk-Date format: 20060102T150405Z. */
export function sdkDate(date: Date): string {
  return date.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

export interface SdkSignInput {
  accessKey: string;
  secretKey: string;
  method: string;
  url: URL | string;
  /** Headers that will be sent (X-Sdk-Date is added if missing). */
  headers?: Record<string, string> | undefined;
  body?: string | Buffer | undefined;
  /** Used for X-Sdk-Date when the headers do not carry one. */
  date?: Date | undefined;
  /** Header names to sign; default: every given header except Content-Type, as the SDK does. */
  signedHeaders?: string[] | undefined;
}

export interface SdkSignature {
  /** Headers to add: X-Sdk-Date and Authorization. */
  headers: Record<string, string>;
  signedHeaders: string[];
  canonicalRequest: string;
  stringToSign: string;
  signature: string;
}

export function signSdkHmac(input: SdkSignInput): SdkSignature {
  const url = typeof input.url === 'string' ? new URL(input.url) : input.url;
  const given: Record<string, string> = {};
  for (const [k, v] of Object.entries(input.headers ?? {})) given[k.toLowerCase()] = v;
  given['x-sdk-date'] ??= sdkDate(input.date ?? new Date());
  const xSdkDate = given['x-sdk-date'];

  const names = input.signedHeaders?.map((h) => h.toLowerCase()) ?? Object.keys(given).filter((h) => !h.startsWith('content-type'));
  const signedHeaders = [...new Set([...names, 'x-sdk-date'])].sort(compare);
  const canonicalHeaders = signedHeaders.map((h) => `${h}:${(h === 'host' ? (given.host ?? url.host) : (given[h] ?? '')).trim()}\n`).join('');

  const bodyHash = createHash('sha256')
    .update(input.body ?? '')
    .digest('hex');
  const canonicalRequest = [
    input.method.toUpperCase(),
    canonicalUri(url.pathname),
    canonicalQueryString(url.searchParams),
    canonicalHeaders,
    signedHeaders.join(';'),
    bodyHash,
  ].join('\n');
  const stringToSign = [SDK_ALGORITHM, xSdkDate, createHash('sha256').update(canonicalRequest, 'utf8').digest('hex')].join('\n');
  const signature = createHmac('sha256', input.secretKey).update(stringToSign, 'utf8').digest('hex');
  return {
    headers: {
      'X-Sdk-Date': xSdkDate,
      Authorization: `${SDK_ALGORITHM} Access=${input.accessKey}, SignedHeaders=${signedHeaders.join(';')}, Signature=${signature}`,
    },
    signedHeaders,
    canonicalRequest,
    stringToSign,
    signature,
  };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
