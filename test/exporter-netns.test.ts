// exporter --all-netns (root, iproute2): a namespace the test makes, with connections inside; every
// series labelled with its netns inode; sockwatch_netns_info / _up; a namespace deleted between
// scrapes drops its series; one it cannot enter (as nobody, through setpriv) is netns_up 0.
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { killCliProcesses } from './helpers/cli';
import { makeNetnsWithConnections, samplesOf, scrape, startServing, valueOf, type TestNetns } from './helpers/metrics';
import { sleep } from './helpers/wait';

const canNetns = process.getuid?.() === 0 && spawnSync('ip', ['-V']).status === 0 && spawnSync('setpriv', ['--version']).status === 0;
let ns: TestNetns | undefined;

afterEach(async () => {
  await killCliProcesses();
  await ns?.remove();
  ns = undefined;
});

describe.skipIf(!canNetns)('exporter --all-netns', () => {
  it('labels every series with the namespace, reports it in netns_info and netns_up, drops it once gone', async () => {
    ns = await makeNetnsWithConnections(`sw-exp-${process.pid}`, 3, 2);
    const { url } = await startServing(['exporter', '--listen', '127.0.0.1:0', '--all-netns', '--min-interval', '0']);
    const s = await scrape(url);
    const netns = String(ns.inode);
    expect(valueOf(s, 'sockwatch_outbound_connections', { netns, destination: `127.0.0.1:${ns.port4}` })).toBe(3);
    expect(valueOf(s, 'sockwatch_outbound_connections', { netns, destination: `[::1]:${ns.port6}` })).toBe(2);
    expect(valueOf(s, 'sockwatch_sockets', { netns, protocol: 'tcp', family: 'ipv4', state: 'listen' })).toBe(1);
    // Client and accepted sides: 3 + 3 IPv4, 2 + 2 IPv6.
    expect(valueOf(s, 'sockwatch_sockets', { netns, protocol: 'tcp', family: 'ipv6', state: 'established' })).toBe(4);
    expect(valueOf(s, 'sockwatch_netns_up', { netns })).toBe(1);
    expect(samplesOf(s, 'sockwatch_netns_info', { netns })).toEqual([
      { name: 'sockwatch_netns_info', labels: { netns, pod_uid: '', container_id: '', comm: 'python3' }, value: 1 },
    ]);
    expect(samplesOf(s, 'sockwatch_scan_duration_seconds_count', { netns })).toHaveLength(1);
    // Our own namespace is there too, with its own label.
    expect(samplesOf(s, 'sockwatch_netns_up').length).toBeGreaterThanOrEqual(2);
    expect(samplesOf(s, 'sockwatch_sockets').every((x) => x.labels.netns !== undefined)).toBe(true);

    await ns.remove();
    ns = undefined;
    let after = await scrape(url);
    for (let i = 0; i < 50 && after.some((x) => x.labels.netns === netns); i++) {
      await sleep(100);
      after = await scrape(url);
    }
    expect(after.filter((x) => x.labels.netns === netns)).toEqual([]);
  });

  it('a namespace it cannot enter is sockwatch_netns_up 0 and a counted error, never a failed scrape', async () => {
    ns = await makeNetnsWithConnections(`sw-exp-nobody-${process.pid}`, 1, 0);
    const netns = String(ns.inode);
    // As nobody, without capabilities: /var/run/netns/NAME is found, entering it is refused.
    const wrapper = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all'];
    const { cli, url } = await startServing(['exporter', '--listen', '127.0.0.1:0', '--all-netns'], { wrapper });
    expect(cli.stderr()).toContain('without CAP_SYS_ADMIN');
    const s = await scrape(url);
    expect(valueOf(s, 'sockwatch_netns_up', { netns })).toBe(0);
    expect(valueOf(s, 'sockwatch_scan_errors_total', { netns, code: 'EPERM' })).toBe(1);
    expect(samplesOf(s, 'sockwatch_outbound_connections', { netns })).toEqual([]);
    expect(samplesOf(s, 'sockwatch_netns_up').some((x) => x.value === 1)).toBe(true); // its own namespace
  });
});
