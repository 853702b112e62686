// The queue watch asks the kernel for less: without a state filter it leaves TIME_WAIT and SYN_RECV
// (and with it the request sockets, NEW_SYN_RECV) out of the state mask, since the kernel reports
// zero queues for them. Real sockets on loopback: a TIME_WAIT socket and an offender on one port.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { QueueWatcher, type QueueAlert, type QueueFilter, type QueueTickStats } from '../lib/queues';
import { QUEUE_WATCH_STATES } from '../lib/queues/watcher';
import { compileSampleOptions, listSockets } from '../lib/sampler';
import { ALL_STATES_MASK } from '../lib/states';
import { cleanupSockets, connect, eventually, pausedServer, waitAccepted } from './helpers/sockets';
import { waitFor } from './helpers/wait';

const TIME_WAIT = 6;
const SYN_RECV = 3;
const NEW_SYN_RECV = 12;

const watchers: QueueWatcher[] = [];
afterEach(async () => {
  while (watchers.length) await watchers.pop()!.stop();
});
afterAll(cleanupSockets);

/**
 * One listener on 127.0.0.1 holding a server-side TIME_WAIT socket (the server closed first) and
 * an accepted connection with 5000 unread bytes: three sockets with the listener's local port.
 */
async function listenerWithTimeWaitAndOffender(): Promise<{ port: number; offenderRemotePort: number }> {
  const { port, accepted } = await pausedServer('127.0.0.1');
  const closing = await connect('127.0.0.1', port);
  closing.on('error', () => undefined);
  await waitAccepted(accepted, 1);
  accepted[0].destroy(); // FIN from the server; the client answers with its own: server side → TIME_WAIT
  const offender = await connect('127.0.0.1', port);
  await waitAccepted(accepted, 2);
  offender.write(Buffer.alloc(5000, 1));
  const rows = await eventually(
    // The address too: the port number alone may be another loopback address's ephemeral port.
    () => listSockets({ tcp: true, localPorts: [port], localAddresses: ['127.0.0.1'] }),
    (rs) => rs.some((r) => r.stateName === 'time-wait') && rs.some((r) => r.recvQ === 5000),
  );
  expect(rows.map((r) => r.stateName).sort()).toEqual(['established', 'listen', 'time-wait']);
  return { port, offenderRemotePort: offender.localPort! };
}

function watch(filter: QueueFilter): {
  alerts: QueueAlert[];
  ticks: QueueTickStats[];
} {
  const watcher = new QueueWatcher({
    intervalMs: 20,
    recvThreshold: 1000,
    sendThreshold: 'off',
    acceptThreshold: 'off',
    owners: false,
    filter,
  });
  watchers.push(watcher);
  const seen = { alerts: [] as QueueAlert[], ticks: [] as QueueTickStats[] };
  watcher.on('alert', (a) => seen.alerts.push(a));
  watcher.on('tick', (t) => seen.ticks.push(t));
  watcher.start();
  return seen;
}

describe('queue watch state mask', () => {
  it('leaves TIME_WAIT, SYN_RECV and NEW_SYN_RECV out of the request and keeps every other state', () => {
    const mask = compileSampleOptions({ states: QUEUE_WATCH_STATES }).tcpStates;
    for (const bit of [TIME_WAIT, SYN_RECV, NEW_SYN_RECV]) expect(mask & (1 << bit)).toBe(0);
    expect(mask).toBe(ALL_STATES_MASK & ~(1 << TIME_WAIT) & ~(1 << SYN_RECV) & ~(1 << NEW_SYN_RECV));
  });

  it('finds the offender while the kernel leaves the TIME_WAIT socket out of the sample', async () => {
    const { port, offenderRemotePort } = await listenerWithTimeWaitAndOffender();
    const run = watch({ tcp: true, localPorts: [port], localAddresses: ['127.0.0.1'] });
    await waitFor('the RECV alert', () => run.alerts.length >= 1);
    expect(run.alerts[0]).toMatchObject({ event: 'alert', type: 'RECV', bytes: 5000, state: 'established' });
    expect(run.alerts[0].remote).toBe(`127.0.0.1:${offenderRemotePort}`);
    // listener + offender: the TIME_WAIT socket on the same port was not in the kernel's reply
    expect(run.ticks[0].socketsSeen).toBe(2);
  });

  it('sends a filter that names its states as given (TIME_WAIT counted)', async () => {
    const { port } = await listenerWithTimeWaitAndOffender();
    const run = watch({ tcp: true, localPorts: [port], localAddresses: ['127.0.0.1'], states: ['all'] });
    await waitFor('the RECV alert', () => run.alerts.length >= 1);
    expect(run.ticks[0].socketsSeen).toBe(3);
  });
});
