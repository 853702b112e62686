// Sampling inside another network namespace (needs root and iproute2's `ip`; both are on CI here).
import { execFileSync, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sampler } from '../lib/sampler';
import { cleanupSockets } from './helpers/sockets';
import { nodeAsNobody } from './helpers/netns';

const NS = `sw-test-${process.pid}`;
/** Python tail of the scripts run inside the namespace: a detached child keeps the sockets open,
 *  the parent prints `port` and exits (so execFileSync returns). */
const HOLD_AND_PRINT_PORT = `if os.fork() == 0:
    os.setsid()
    null = os.open('/dev/null', os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    time.sleep(3600)
    os._exit(0)
print(port, flush=True)
os._exit(0)
`;
/** Runs a python3 script inside the test namespace and returns what it printed. */
function pythonInNetns(script: string): string {
  return execFileSync('ip', ['netns', 'exec', NS, 'python3', '-c', script]).toString();
}
const canNetns = process.getuid?.() === 0 && spawnSync('ip', ['-V']).status === 0;

describe.skipIf(!canNetns)('network namespaces', () => {
  let port = 0;
  beforeAll(async () => {
    execFileSync('ip', ['netns', 'add', NS]);
    execFileSync('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
    // A listener that exists only inside the namespace, held by a forked python child.
    const out = pythonInNetns(`
import socket, os, sys, time
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(3)
port = s.getsockname()[1]
${HOLD_AND_PRINT_PORT}`);
    port = Number(out.trim());
  });

  afterAll(async () => {
    await cleanupSockets();
    spawnSync('ip', ['netns', 'pids', NS])
      .stdout?.toString()
      .trim()
      .split('\n')
      .filter(Boolean)
      .forEach((p) => {
        try {
          process.kill(Number(p), 'SIGKILL');
        } catch {
          /* gone */
        }
      });
    spawnSync('ip', ['netns', 'del', NS]);
  });

  it('sees the namespace’s sockets through /var/run/netns/NAME and not from the host', async () => {
    const inside = new Sampler({ netns: `/var/run/netns/${NS}` });
    const r = await inside.sample({ tcp: true, states: ['listen'], all: true });
    const ours = r.records.find((x) => x.localAddress === '127.0.0.1' && x.localPort === port);
    expect(ours?.inode).toBeGreaterThan(0);
    await inside.close();
    // Inodes and cookies are host-wide: the host may hold its own 127.0.0.1:port listener by chance,
    // but never this socket (the leak: a sampler left in the namespace, or the host seeing into it).
    const host = new Sampler();
    const h = await host.sample({ tcp: true, states: ['listen'], localPorts: [port], all: true });
    expect(h.records.filter((x) => x.inode === ours!.inode || x.cookie === ours!.cookie)).toEqual([]);
    await host.close();
  });

  it('reports SYN_RECV request sockets: a SYN whose handshake can never complete', async () => {
    // Inside the namespace: a listener on one end of a veth pair (both ends in the namespace), and
    // a raw SYN to it from an address nobody holds. The SYN-ACK waits for an ARP answer that never
    // comes, so the request socket stays in SYN_RECV while the kernel retries. Nothing leaves the
    // namespace.
    execFileSync('ip', ['-n', NS, 'link', 'add', 'sw0', 'type', 'veth', 'peer', 'name', 'sw1']);
    execFileSync('ip', ['-n', NS, 'addr', 'add', '10.77.0.1/24', 'dev', 'sw0']);
    execFileSync('ip', ['-n', NS, 'link', 'set', 'sw0', 'up']);
    execFileSync('ip', ['-n', NS, 'link', 'set', 'sw1', 'up']);
    const out = pythonInNetns(`
import socket, struct, os, time
lst = socket.socket(); lst.bind(('10.77.0.1', 0)); lst.listen(8)
port = lst.getsockname()[1]
def csum(b):
    if len(b) % 2: b += b'\\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
src, dst = socket.inet_aton('10.77.0.2'), socket.inet_aton('10.77.0.1')
tcp = struct.pack('!HHIIBBHHH', 40000, port, 1234, 0, 5 << 4, 0x02, 65535, 0, 0)
tcp = tcp[:16] + struct.pack('!H', csum(src + dst + struct.pack('!BBH', 0, 6, len(tcp)) + tcp)) + tcp[18:]
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, src, dst)
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
raw.sendto(ip + tcp, ('10.77.0.1', 0))
${HOLD_AND_PRINT_PORT}`);
    const synPort = Number(out.trim());
    const s = new Sampler({ netns: `/var/run/netns/${NS}` });
    let recs = s.sampleSync({ tcp: true, states: ['syn-recv'], all: true }).records;
    // Up to 20 s: on a loaded machine the SYN may be processed late (the request socket then lives
    // for a minute of SYN-ACK retries, so a long wait costs nothing when it works).
    for (let i = 0; i < 1000 && recs.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      recs = s.sampleSync({ tcp: true, states: ['syn-recv'], all: true }).records;
    }
    await s.close();
    expect(recs).toHaveLength(1);
    expect(recs[0]).toMatchObject({
      stateName: 'syn-recv',
      localAddress: '10.77.0.1',
      localPort: synPort,
      remoteAddress: '10.77.0.2',
      remotePort: 40000,
      recvQ: 0,
      sendQ: 0,
      inode: 0,
    });
  });

  it('works through /proc/PID/ns/net of a process inside', async () => {
    const pid = spawnSync('ip', ['netns', 'pids', NS]).stdout.toString().trim().split('\n')[0];
    const s = new Sampler({ netns: `/proc/${pid}/ns/net` });
    const r = s.sampleSync({ tcp: true, states: ['listen'], localPorts: [port], all: true });
    expect(r.records).toHaveLength(1);
    await s.close();
  });

  it('an unprivileged user gets a clear error naming the privilege', () => {
    const child = nodeAsNobody(
      'sampler.js',
      `try { new m.Sampler({ netns: '/var/run/netns/${NS}' }); console.log('no error'); }
       catch (e) { console.log(e.code + ' ' + e.message); }`,
    );
    expect(child.stdout).toMatch(
      /EPERM setns EPERM: netns \/var\/run\/netns\/sw-test-\d+: permission denied: entering a network namespace needs CAP_SYS_ADMIN/,
    );
  });
});
