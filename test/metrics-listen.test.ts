// `queues --metrics-listen` and `snat --metrics-listen`: the commands' own state as Prometheus
// metrics, against a real HTTP receiver on loopback (queues) and real connections (snat), on a
// loopback /29 of the test's own selected with --src/--dst so that no other test's sockets count.
import { afterEach, describe, expect, it } from 'vitest';
import { runCleanups } from './helpers/cleanup';
import { killCliProcesses, runCli } from './helpers/cli';
import { HttpReceiver } from './helpers/http-receiver';
import { scrape, startServing, valueOf, type Sample } from './helpers/metrics';
import { SNAT_ENV } from './helpers/snat';
import { acceptingServer, cleanupSockets, connect, pausedServer, waitAccepted } from './helpers/sockets';
import { ownLoopbackNet, type OwnNet } from './helpers/own-address';
import { tmpDir } from './helpers/tmp';
import { sleep } from './helpers/wait';

afterEach(async () => {
  await killCliProcesses();
  await cleanupSockets();
  await runCleanups();
});

/** Scrapes until `ok` holds. */
async function scrapeUntil(url: string, ok: (s: Sample[]) => boolean): Promise<Sample[]> {
  let s = await scrape(url);
  for (let i = 0; i < 200 && !ok(s); i++) {
    await sleep(50);
    s = await scrape(url);
  }
  return s;
}

/** A receive queue of 10,000 unread bytes on host 1 (the accepted side of a connection from host 2). */
async function offender(net: OwnNet): Promise<void> {
  const { port, accepted } = await pausedServer(net.host(1));
  const c = await connect(net.host(1), port, net.host(2));
  await waitAccepted(accepted, 1);
  c.write(Buffer.alloc(10_000, 1));
}

describe('queues --metrics-listen', () => {
  const args = (net: OwnNet, receiver: HttpReceiver, stateDir: string): string[] => [
    'queues',
    '--recv-threshold',
    '1k',
    '--send-threshold',
    'off',
    '--accept-threshold',
    'off',
    '--interval',
    '50',
    '--src',
    net.cidr,
    '--dst',
    net.cidr,
    '--url',
    `${receiver.url}/hook`,
    '--state-dir',
    stateDir,
    '--backoff-base',
    '20',
    '--backoff-cap',
    '50',
    '--metrics-listen',
    '127.0.0.1:0',
  ];

  it('counts alerts raised and delivered to a real receiver; the outbox is empty after', async () => {
    const net = ownLoopbackNet();
    const receiver = await HttpReceiver.start();
    await offender(net);
    const { url } = await startServing(args(net, receiver, tmpDir('queues metrics')));
    await receiver.waitFor((r) => r.length >= 1);
    const s = await scrapeUntil(url, (x) => valueOf(x, 'sockwatch_alerts_delivered_total') === 1);
    expect(valueOf(s, 'sockwatch_alerts_raised_total', { event: 'alert', type: 'RECV' })).toBe(1);
    expect(valueOf(s, 'sockwatch_alerts_delivered_total')).toBe(1);
    expect(receiver.requests).toHaveLength(1);
    expect(valueOf(s, 'sockwatch_outbox_alerts')).toBe(0);
    expect(valueOf(s, 'sockwatch_outbox_oldest_alert_age_seconds')).toBe(0);
    expect(valueOf(s, 'sockwatch_alert_retries_total')).toBe(0);
  });

  it('counts retries against a failing receiver, the outbox depth and the oldest alert age; dead letters on a refusal', async () => {
    const net = ownLoopbackNet();
    const receiver = await HttpReceiver.start({ defaultReply: 503 });
    await offender(net);
    const { url } = await startServing(args(net, receiver, tmpDir('queues metrics')));
    const s = await scrapeUntil(
      url,
      (x) => (valueOf(x, 'sockwatch_alert_retries_total') ?? 0) >= 2 && (valueOf(x, 'sockwatch_outbox_oldest_alert_age_seconds') ?? 0) > 0,
    );
    expect(valueOf(s, 'sockwatch_alerts_raised_total', { event: 'alert', type: 'RECV' })).toBe(1);
    expect(valueOf(s, 'sockwatch_alert_retries_total')).toBeGreaterThanOrEqual(2);
    expect(valueOf(s, 'sockwatch_outbox_alerts')).toBe(1);
    expect(valueOf(s, 'sockwatch_alerts_delivered_total')).toBe(0);
    receiver.reply(404);
    const after = await scrapeUntil(url, (x) => valueOf(x, 'sockwatch_alerts_dead_lettered_total') === 1);
    expect(valueOf(after, 'sockwatch_alerts_dead_lettered_total')).toBe(1);
    expect(valueOf(after, 'sockwatch_outbox_alerts')).toBe(0);
  });

  it('exits 2 with one line on a bad --metrics-listen, or --web.config.file without it', async () => {
    const bad = await runCli(['queues', '--metrics-listen', 'nowhere']);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toMatch(/^sockwatch: --metrics-listen: "nowhere" is not HOST:PORT/);
    const alone = await runCli(['queues', '--web.config.file', 'x.yml']);
    expect(alone.code).toBe(2);
    expect(alone.stderr.trim()).toBe('sockwatch: --web.config.file needs --metrics-listen');
  });
});

describe('snat --metrics-listen', () => {
  it('serves the last poll’s connections per destination and the threshold', async () => {
    const net = ownLoopbackNet();
    const a = await acceptingServer(net.host(1));
    for (let i = 0; i < 3; i++) await connect(net.host(1), a.port, net.host(2));
    const logDir = tmpDir('snat metrics');
    const { url } = await startServing(
      [
        'snat',
        '-t',
        '2',
        '-f',
        '0.2',
        '--log-dir',
        logDir,
        '--src',
        net.cidr,
        '--dst',
        net.cidr,
        '--exclude-ports',
        String(a.port),
        '--metrics-listen',
        '127.0.0.1:0',
      ],
      { unsetEnv: SNAT_ENV, env: { COMPUTERNAME: 'metrics-test' }, cwd: logDir },
    );
    const s = await scrapeUntil(
      url,
      (x) => valueOf(x, 'sockwatch_outbound_connections', { destination: `${net.host(1)}:${a.port}` }) === 3,
    );
    expect(valueOf(s, 'sockwatch_outbound_connections', { destination: `${net.host(1)}:${a.port}` })).toBe(3);
    expect(valueOf(s, 'sockwatch_outbound_connections', { destination: 'other' })).toBe(0);
    expect(valueOf(s, 'sockwatch_outbound_connections_distinct_240s', { destination: `${net.host(1)}:${a.port}` })).toBe(3);
    expect(valueOf(s, 'sockwatch_snat_threshold')).toBe(2);
    expect(s.some((x) => x.name.startsWith('sockwatch_collections_'))).toBe(false); // none started: monitoring only
  });
});
