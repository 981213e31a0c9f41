// POST /webhooks/harbor: authenticate (constant time), parse, pick the rules, queue the runs, answer at
// once (202); the copies run in the background. Malformed → 400, unauthenticated → 401, both logged
// and counted, never thrown past the handler.
import type { FerryConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { compileFilters } from '../plan/filters.js';
import { hasToken, hasWebhookAuth } from './auth.js';
import type { RunRequest, TriggerInfo } from './execution.js';
import type { Metrics } from './metrics.js';
import type { TriggerResult } from './runner.js';
import { HttpError, type Route, addressedToLoopback, readJson, sendJson } from './server.js';
import { WebhookError, deletedArtifacts, eventLabel, isDeletion, matchRules, parseHarborEvent, pushedArtifacts } from './webhook.js';

export interface WebhookTarget {
  config(): FerryConfig;
  readonly metrics: Metrics;
  readonly logger: Logger;
  trigger(rule: string, trigger: TriggerInfo, request: RunRequest): Promise<TriggerResult>;
}

/**
 * Who may post: with daemon.webhookAuth, requests whose Authorization equals it; else, with
 * daemon.token, `Bearer <token>`; with neither, requests addressed to loopback only (the daemon then
 * listens on loopback anyway).
 */
function authorized(d: WebhookTarget, req: Parameters<Route['handler']>[0]['req']): boolean {
  const settings = d.config().daemon;
  if (settings?.webhookAuth) return hasWebhookAuth(req, settings.webhookAuth);
  if (settings?.token) return hasToken(req, settings.token);
  return addressedToLoopback(req);
}

export function webhookRoute(d: WebhookTarget): Route {
  return {
    method: 'POST',
    path: /^\/webhooks\/harbor$/,
    access: 'custom',
    handler: async ({ req, res }) => {
      const remote = req.socket.remoteAddress;
      if (!authorized(d, req)) {
        d.metrics.webhook('unknown', 'unauthorized');
        d.logger.warn({ remote, hasAuthorization: !!req.headers.authorization }, 'webhook refused: wrong or missing Authorization header');
        throw new HttpError(401, 'missing or wrong Authorization header (the webhook policy\'s "Auth Header" must equal daemon.webhookAuth)');
      }
      let event;
      try {
        const body = await readJson(req, 1024 * 1024);
        event = parseHarborEvent(body);
      } catch (err) {
        if (err instanceof WebhookError || (err instanceof HttpError && err.status === 400)) {
          d.metrics.webhook('unknown', 'malformed');
          d.logger.warn({ remote, err: err.message }, 'malformed webhook payload');
          throw new HttpError(400, `malformed Harbor webhook payload: ${err.message}`);
        }
        throw err;
      }
      const label = eventLabel(event.type);
      if (!event.handled) {
        d.metrics.webhook(label, 'ignored');
        d.logger.debug({ type: event.type }, 'webhook event ignored');
        sendJson(res, 200, { accepted: false, reason: `event type ${event.type} is not acted on`, executions: [] });
        return;
      }
      const deletion = isDeletion(event.type);
      const fromSource = matchRules(d.config(), event).filter((r) => !deletion || r.deleteRemote);
      // The repository filters are checked here too, so pushes no rule cares about leave no executions
      // behind; the run applies every filter again (tags, kinds, …) through the plan.
      const rules = fromSource.filter((r) => compileFilters(r.filters).repositoryMatches(event.repository));
      if (!rules.length) {
        d.metrics.webhook(label, 'unmatched');
        d.logger.info({ type: event.type, repository: event.repository }, 'webhook event matches no event-triggered rule');
        const reason = fromSource.length
          ? `no event-triggered rule's repository filters select ${event.repository}`
          : deletion
            ? 'no event-triggered rule with deleteRemote: true has this source'
            : 'no event-triggered rule has this source';
        sendJson(res, 200, { accepted: false, reason, executions: [] });
        return;
      }
      const trigger: TriggerInfo = { type: 'event', at: new Date().toISOString(), event: event.type, operator: event.operator, repository: event.repository };
      const request: RunRequest = deletion
        ? { full: false, artifacts: [], deletions: deletedArtifacts(event) }
        : { full: false, artifacts: pushedArtifacts(event), deletions: [] };
      const executions = [];
      for (const rule of rules) {
        const r = await d.trigger(rule.name, trigger, request);
        executions.push({ rule: rule.name, id: r.execution.id, status: r.execution.status, queued: r.queued, merged: r.merged });
      }
      d.metrics.webhook(label, 'accepted');
      d.logger.info({ type: event.type, repository: event.repository, operator: event.operator, rules: rules.map((r) => r.name) }, 'webhook accepted');
      sendJson(res, 202, { accepted: true, event: event.type, repository: event.repository, executions });
    },
  };
}
