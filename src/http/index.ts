// The request layer's public surface.
export { type Credentials, basicAuthorization, basicAuthorizer, REFRESHED_CREDENTIALS, type AuthAnswer } from './auth.js';
export { bufferedBody, readBody, readBodyText, readErrorText } from './body.js';
export { NetworkError, USER_AGENT, isNetworkError, trustedCertificates } from './dispatch.js';
export { ByteBudget, LimitShare, type RequestLimits } from './limits.js';
export { RequestCounter, type RequestEvent, type RequestObserver } from './observe.js';
export { MAX_PAGES, PageCursor, linkNext } from './pagination.js';
export { MAX_REDIRECTS } from './redirects.js';
export { RETRYABLE_STATUS, SharedBackoff, backoffMs, parseRetryAfter } from './retry.js';
export { Transport, type TransportOptions } from './transport.js';
export { type Authorizer, type BodyFactory, type BodySource, type HttpMethod, type HttpRequest, type HttpResponse, type Layer, type RequestKind, type Send, headerValue, isReplayable, redactUrl } from './types.js';
