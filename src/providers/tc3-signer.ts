// Tencent Cloud API 3.0 request signing, TC3-HMAC-SHA256 (Tencent docs "Signature v3").
//
//   CanonicalRequest = POST \n / \n <empty query> \n
//                      content-type:<ct>\nhost:<host>\n \n content-type;host \n hex(sha256(payload))
//   StringToSign     = TC3-HMAC-SHA256 \n <timestamp> \n <UTC date>/<service>/tc3_request \n hex(sha256(CanonicalRequest))
//   kDate = HMAC("TC3"+SecretKey, date); kService = HMAC(kDate, service); kSigning = HMAC(kService, "tc3_request")
//   Signature        = hex(HMAC(kSigning, StringToSign))
//
// The payload is hashed byte for byte as sent: the published example's payload contains the literal
// text `\u672a\u547d\u540d` (JSON escapes, as Python's json.dumps writes them), and only that form
// reproduces the published hashes. So sign exactly the string you send; never re-serialize.
// Canonical header names and values are lower-cased and trimmed (Tencent's rule).
import { createHash, createHmac } from 'node:crypto';

export const TC3_ALGORITHM = 'TC3-HMAC-SHA256';
/** What the official SDKs send and sign for JSON POSTs (tencentcloud-sdk-nodejs common/http/http_connection). */
export const TC3_CONTENT_TYPE = 'application/json';

export interface Tc3SignInput {
  secretId: string;
  secretKey: string;
  /** Product, e.g. "tcr" (the first label of the API host). */
  service: string;
  /** API host exactly as sent in the Host header (include a non-default port). */
  host: string;
  action: string;
  version: string;
  region?: string | undefined;
  /** Unix time in seconds. */
  timestamp: number;
  /** The exact request body. */
  payload: string;
  /** Session token of temporary credentials (X-TC-Token). */
  token?: string | undefined;
  contentType?: string | undefined;
}

export interface Tc3Signature {
  /** Headers to send (Authorization, Content-Type, Host, X-TC-*). */
  headers: Record<string, string>;
  /** UTC date of the timestamp, YYYY-MM-DD. */
  date: string;
  credentialScope: string;
  payloadHash: string;
  canonicalRequest: string;
  canonicalRequestHash: string;
  stringToSign: string;
  signature: string;
}

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

/** The date part of the credential scope: the UTC day of the timestamp. */
export function tc3Date(timestamp: number): string {
  return new Date(timestamp * 1000).toISOString().slice(0, 10);
}

export function signTc3(input: Tc3SignInput): Tc3Signature {
  const contentType = input.contentType ?? TC3_CONTENT_TYPE;
  const signedHeaders = 'content-type;host';
  const canonicalHeaders = `content-type:${contentType.trim().toLowerCase()}\nhost:${input.host.trim().toLowerCase()}\n`;
  const payloadHash = sha256Hex(Buffer.from(input.payload, 'utf8'));
  const canonicalRequest = ['POST', '/', '', canonicalHeaders, signedHeaders, payloadHash].join('\n');
  const canonicalRequestHash = sha256Hex(canonicalRequest);

  const date = tc3Date(input.timestamp);
  const credentialScope = `${date}/${input.service}/tc3_request`;
  const stringToSign = [TC3_ALGORITHM, String(input.timestamp), credentialScope, canonicalRequestHash].join('\n');

  const kDate = hmac(`TC3${input.secretKey}`, date);
  const kService = hmac(kDate, input.service);
  const kSigning = hmac(kService, 'tc3_request');
  const signature = createHmac('sha256', kSigning).update(stringToSign, 'utf8').digest('hex');

  const headers: Record<string, string> = {
    Authorization: `${TC3_ALGORITHM} Credential=${input.secretId}/${credentialScope}, SignedHeaders=${signedHeaders}, Signature=${signature}`,
    'Content-Type': contentType,
    Host: input.host,
    'X-TC-Action': input.action,
    'X-TC-Timestamp': String(input.timestamp),
    'X-TC-Version': input.version,
  };
  if (input.region) headers['X-TC-Region'] = input.region;
  if (input.token) headers['X-TC-Token'] = input.token;
  return { headers, date, credentialScope, payloadHash, canonicalRequest, canonicalRequestHash, stringToSign, signature };
}
