// JSON.stringify(alert) must work: an alert holds a bigint cookie, which JSON.stringify refuses.
// Rule: every alert the tracker makes carries a non-enumerable toJSON (so spreads, Object.keys and
// deep equality see only the data) writing the alert's own fields, the cookie as a decimal string.
// alertToJson (alert-params.ts) is the CLI's line format with its own field names; this is not.
import type { QueueAlert } from './types';

/** What JSON.stringify(alert) writes: the alert's fields, the cookie as a decimal string. */
export type QueueAlertJson = Omit<QueueAlert, 'cookie'> & { cookie: string };

function alertJson(this: QueueAlert): QueueAlertJson {
  return { ...this, cookie: this.cookie.toString() };
}

/** Gives `alert` its toJSON (in place) and returns it. */
export function withToJson<T extends QueueAlert>(alert: T): T {
  Object.defineProperty(alert, 'toJSON', { value: alertJson, enumerable: false, writable: true, configurable: true });
  return alert;
}
