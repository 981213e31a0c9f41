// Moved: the request layer lives in src/http/ (one file per layer). These re-exports keep imports of
// the old module working while other work lands; new code imports from ../http/.
export { USER_AGENT, isNetworkError, trustedCertificates } from '../http/dispatch.js';
export { backoffMs, parseRetryAfter } from '../http/retry.js';
export { type HttpRequest, type HttpResponse, headerValue, redactUrl } from '../http/types.js';
