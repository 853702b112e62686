// The wire form of a queue alert: the stable id, the HTTP query parameters and the JSON line.
import { createHash } from 'node:crypto';
import type { QueueAlert, QueueEventKind, QueueType } from './types';

/**
 * The id of one event: a hash of host, socket cookie, queue type, the crossing's sample time, the
 * event kind and the repeat number. Redeliveries (after a crash, from the outbox) keep it; a new
 * crossing of the same socket gets a new one. 32 hex characters.
 */
export function alertId(host: string, cookie: bigint, type: QueueType, since: number, event: QueueEventKind, repeat: number): string {
  return createHash('sha256')
    .update(`${host}\n${cookie}\n${type}\n${since.toFixed(6)}\n${event}\n${repeat}`)
    .digest('hex')
    .slice(0, 32);
}

/**
 * Query parameters of the alert's GET, in this order: ts, type, bytes, threshold, local, remote,
 * proto, state, host, pid and comm (when known), id, event.
 */
export function alertToParams(alert: QueueAlert): Record<string, string> {
  const p: Record<string, string> = {
    ts: alert.timestamp.toFixed(6),
    type: alert.type,
    bytes: String(alert.bytes),
    threshold: String(alert.threshold),
    local: alert.local,
    remote: alert.remote,
    proto: alert.protocol,
    state: alert.state,
    host: alert.host,
  };
  if (alert.pid !== undefined) p.pid = String(alert.pid);
  if (alert.comm !== undefined) p.comm = alert.comm;
  p.id = alert.id;
  p.event = alert.event;
  return p;
}

/** The alert as a JSON-friendly object (numbers stay numbers; the cookie becomes a string). */
export function alertToJson(alert: QueueAlert): Record<string, unknown> {
  const o: Record<string, unknown> = {
    ts: Number(alert.timestamp.toFixed(6)),
    event: alert.event,
    type: alert.type,
    bytes: alert.bytes,
    threshold: alert.threshold,
    local: alert.local,
    remote: alert.remote,
    proto: alert.protocol,
    state: alert.state,
    host: alert.host,
  };
  if (alert.pid !== undefined) o.pid = alert.pid;
  if (alert.comm !== undefined) o.comm = alert.comm;
  o.id = alert.id;
  o.since = Number(alert.since.toFixed(6));
  o.repeat = alert.repeat;
  o.family = alert.family === 6 ? 'ipv6' : 'ipv4';
  o.uid = alert.uid;
  o.inode = alert.inode;
  o.cookie = alert.cookie.toString();
  if (alert.closed) o.closed = true;
  return o;
}

/** `2025-05-01T12:00:00.123456Z` from unix seconds. */
export function isoMicros(unixSeconds: number): string {
  const whole = Math.floor(unixSeconds);
  const micros = Math.round((unixSeconds - whole) * 1e6);
  const carry = micros >= 1e6 ? 1 : 0;
  const base = new Date((whole + carry) * 1000).toISOString().slice(0, 19);
  return `${base}.${String(carry ? 0 : micros).padStart(6, '0')}Z`;
}

/** One concise line for people: time, event, type, sizes, socket, owner, id. */
export function alertToLine(alert: QueueAlert): string {
  const unit = alert.type === 'ACCEPT' ? 'conn' : 'B';
  const q = alert.type === 'ACCEPT' ? 'accept' : alert.type === 'RECV' ? 'recv' : 'send';
  let cmp: string;
  if (alert.event === 'resolved') cmp = alert.closed ? 'socket closed' : `${q} ${alert.bytes} ${unit}, threshold ${alert.threshold}`;
  else cmp = `${q} ${alert.bytes} ${unit} ${alert.type === 'ACCEPT' && alert.bytes <= alert.threshold ? '>=' : '>'} ${alert.threshold}`;
  const owner = alert.pid !== undefined ? ` pid ${alert.pid}${alert.comm ? ` (${alert.comm})` : ''}` : '';
  const rep = alert.event === 'repeat' ? ` #${alert.repeat}` : '';
  return `${isoMicros(alert.timestamp)} ${alert.event.toUpperCase()}${rep} ${alert.type} ${cmp} ${alert.protocol} ${alert.state} ${alert.local} ${alert.remote}${owner} id ${alert.id}`;
}
