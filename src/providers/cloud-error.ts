// Errors from the cloud management APIs (Tencent TCR, Huawei/OTC SWR). They carry the vendor's own
// error code, message and request id verbatim, because that is what a support ticket needs. They
// never carry request headers or bodies: secrets stay out of messages and logs.

export type CloudProvider = 'tcr' | 'swr';

export interface CloudApiErrorDetails {
  provider: CloudProvider;
  /** The API action, e.g. CreateNamespace, or `POST /v2/manage/namespaces`. */
  action: string;
  /** HTTP status, when the cloud answered at all. */
  status?: number | undefined;
  /** The vendor's error code, e.g. InvalidParameter.ErrNamespaceReserved, APIGW.0301, SVCSTG.SWR.4000014. */
  code?: string | undefined;
  /** The vendor's error message, verbatim. */
  apiMessage?: string | undefined;
  requestId?: string | undefined;
  cause?: unknown;
}

/** Code used when the API could not be reached (DNS, connection refused, TLS, timeout). */
export const NETWORK_ERROR_CODE = 'NetworkError';

export class CloudApiError extends Error {
  override name = 'CloudApiError';
  readonly provider: CloudProvider;
  readonly action: string;
  readonly status: number | undefined;
  readonly code: string | undefined;
  readonly apiMessage: string | undefined;
  readonly requestId: string | undefined;

  constructor(details: CloudApiErrorDetails) {
    const parts = [details.code, details.apiMessage].filter(Boolean).join(': ');
    const extra = [details.status !== undefined ? `HTTP ${details.status}` : '', details.requestId ? `RequestId: ${details.requestId}` : '']
      .filter(Boolean)
      .join(', ');
    super(`${details.provider} ${details.action} failed${parts ? `: ${parts}` : ''}${extra ? ` (${extra})` : ''}`, { cause: details.cause });
    this.provider = details.provider;
    this.action = details.action;
    this.status = details.status;
    this.code = details.code;
    this.apiMessage = details.apiMessage;
    this.requestId = details.requestId;
  }

  /** The credentials were refused (wrong key, wrong signature, expired or skewed clock, no permission). */
  get isAuthFailure(): boolean {
    if (this.status === 401 || this.status === 403) return true;
    const code = this.code ?? '';
    return code.startsWith('AuthFailure') || code.startsWith('UnauthorizedOperation') || code === 'APIGW.0301' || code === 'APIG.0301';
  }

  /** The API endpoint could not be reached at all. */
  get isUnreachable(): boolean {
    return this.code === NETWORK_ERROR_CODE;
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, message: this.message, provider: this.provider, action: this.action, status: this.status, code: this.code, requestId: this.requestId };
  }
}
