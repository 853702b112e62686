// NamespaceScanner against namespaces this test creates (root, iproute2, util-linux unshare): each
// namespace's listener is seen in its own namespace's result only; Samplers are kept between scans
// and closed with their namespace; failures stay per namespace.
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NamespaceScanner, discoverNetworkNamespaces, type NamespaceScan, type NetnsEntry } from '../lib/netns';
import {
  canNetns,
  cleanupNetns,
  deleteNamedNetns,
  inNewNetns,
  killPid,
  listenerScript,
  namedNetns,
  netnsInode,
  nodeAsNobody,
  stopHolder,
  type Holder,
} from './helpers/netns';

const NAME = `sw-scan-${process.pid}`;
const LISTEN = { tcp: true, states: ['listen'], all: true } as const;

/** Descriptors of this process open on these namespaces (the scanner's hold on foreign namespaces). */
function descriptorsOn(...inodes: number[]): number {
  const nsfsDev = fs.statSync('/proc/self/ns/net').dev;
  let n = 0;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      const st = fs.statSync(`/proc/self/fd/${fd}`);
      if (st.dev === nsfsDev && inodes.includes(st.ino)) n++;
    } catch {
      /* closed meanwhile (the readdir's own fd) */
    }
  }
  return n;
}

const of = (scans: NamespaceScan[], inode: number) => scans.find((s) => s.netns.inode === inode);
/** Whether the scan holds a listener on 127.0.0.1:port; a failed scan fails the test with its error. */
function listens(s: NamespaceScan | undefined, port: number): boolean {
  if (s?.error) expect.fail(`netns ${s.netns.inode}: ${s.error.message}`);
  return s?.result?.records.some((r) => r.localAddress === '127.0.0.1' && r.localPort === port) ?? false;
}

describe.skipIf(!canNetns)('NamespaceScanner', () => {
  let named: Holder;
  let unnamed: Holder;
  let namedInode = 0;
  let unnamedInode = 0;
  const selfInode = canNetns ? netnsInode('/proc/self/ns/net') : 0;

  beforeAll(async () => {
    named = (await namedNetns(NAME, listenerScript()))!;
    unnamed = await inNewNetns(listenerScript());
    namedInode = netnsInode(`/var/run/netns/${NAME}`);
    unnamedInode = netnsInode(`/proc/${unnamed.pid}/ns/net`);
  });
  afterAll(cleanupNetns);

  it('scans every namespace: each listener in its own namespace only; Samplers kept, then closed with their namespace', async () => {
    const scanner = new NamespaceScanner();
    try {
      const first = await scanner.scan(LISTEN);
      expect(first[0]!.netns).toMatchObject({ inode: selfInode, self: true });
      const namedPort = Number(named.firstLine);
      const unnamedPort = Number(unnamed.firstLine);
      expect(listens(of(first, namedInode), namedPort)).toBe(true);
      expect(listens(of(first, unnamedInode), unnamedPort)).toBe(true);
      // Port numbers are per namespace: another namespace may hold the same number by chance, but
      // never the same socket (inode and cookie are host-wide).
      const namedSock = of(first, namedInode)!.result!.records.find((r) => r.localPort === namedPort)!;
      for (const s of first) {
        if (s.netns.inode === namedInode) continue;
        expect(s.result?.records.some((r) => r.cookie === namedSock.cookie) ?? false).toBe(false);
      }
      expect(scanner.openNamespaces).toEqual(expect.arrayContaining([selfInode, namedInode, unnamedInode]));
      expect(descriptorsOn(namedInode)).toBe(1);
      expect(descriptorsOn(unnamedInode)).toBe(1);

      // Second scan: the same Samplers (no new descriptor), the same answers.
      const second = await scanner.scan(LISTEN);
      expect(descriptorsOn(namedInode, unnamedInode)).toBe(2);
      expect(listens(of(second, unnamedInode), unnamedPort)).toBe(true);

      // The unnamed namespace's only process exits: the namespace disappears from the next scan,
      // and its Sampler and descriptor are closed.
      await stopHolder(unnamed);
      const third = await scanner.scan(LISTEN);
      expect(of(third, unnamedInode)).toBeUndefined();
      expect(scanner.openNamespaces).not.toContain(unnamedInode);
      expect(descriptorsOn(unnamedInode)).toBe(0);
      expect(descriptorsOn(namedInode)).toBe(1);
      expect(listens(of(third, namedInode), namedPort)).toBe(true);
    } finally {
      await scanner.close();
    }
    expect(scanner.openNamespaces).toEqual([]);
    expect(descriptorsOn(namedInode)).toBe(0);
    await expect(scanner.scan(LISTEN)).rejects.toMatchObject({ code: 'ERR_SOCKWATCH_SAMPLER_CLOSED' });
  });

  it('a pid that died: entered through another process of the namespace; no process left: ENOENT for that namespace only', async () => {
    const holder = await inNewNetns(`import os, time, socket
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(8)
pid = os.fork()
if pid == 0:
    time.sleep(3600); os._exit(0)
print(pid, s.getsockname()[1], flush=True)
time.sleep(3600)`);
    const [childPid, port] = holder.firstLine.split(' ').map(Number) as [number, number];
    const inode = netnsInode(`/proc/${holder.pid}/ns/net`);
    const entry = discoverNetworkNamespaces().find((e) => e.inode === inode)!;
    const scanner = new NamespaceScanner();
    try {
      // The entry's path names the parent; it exits (the child still holds the namespace and, by
      // inheritance, the listener).
      const stale: NetnsEntry = { ...entry, path: `/proc/${holder.pid}/ns/net`, pids: [holder.pid, childPid] };
      await stopHolder(holder);
      const [scan] = await scanner.scan(LISTEN, { entries: [stale] });
      expect(scan!.error).toBeUndefined();
      expect(listens(scan, port)).toBe(true);
      // Now nobody holds it (the scanner's descriptor aside): discovery drops it, and an old entry
      // for it fails alone, with ENOENT, once the scanner no longer holds it.
      killPid(childPid);
      // Up to 20 s (a loaded machine may be slow to reap it): while it lives, discovery still finds the namespace.
      for (let i = 0; i < 2000 && fs.existsSync(`/proc/${childPid}`); i++) await new Promise((r) => setTimeout(r, 10));
      const now = await scanner.scan(LISTEN);
      expect(of(now, inode)).toBeUndefined();
      const own = now.find((s) => s.netns.self)!;
      const results = await scanner.scan(LISTEN, { entries: [stale, own.netns] });
      expect(results[0]!.error).toMatchObject({ code: 'ENOENT' });
      expect(results[0]!.error!.message).toContain(String(inode));
      expect(results[1]!.result?.socketsSeen).toBeGreaterThan(0);
    } finally {
      killPid(childPid);
      await scanner.close();
    }
  });

  it('a namespace held by the scanner keeps its inode: a namespace made after its last process exited gets another', async () => {
    // The kernel hands out the lowest free namespace inode again (an `ip netns del` + `add` usually
    // gets the same one): were the gone namespace freed, the next would likely take its inode.
    const a = await inNewNetns(listenerScript());
    const aInode = netnsInode(`/proc/${a.pid}/ns/net`);
    const scanner = new NamespaceScanner();
    const other = `${NAME}-b`;
    try {
      expect(listens(of(await scanner.scan(LISTEN), aInode), Number(a.firstLine))).toBe(true);
      await stopHolder(a);
      await new Promise((r) => setTimeout(r, 300)); // namespace teardown is asynchronous in the kernel
      await namedNetns(other);
      expect(netnsInode(`/var/run/netns/${other}`)).not.toBe(aInode);
      const next = await scanner.scan(LISTEN);
      expect(of(next, aInode)).toBeUndefined();
      expect(scanner.openNamespaces).not.toContain(aInode);
      expect(of(next, netnsInode(`/var/run/netns/${other}`))?.result).toBeDefined();
    } finally {
      deleteNamedNetns(other);
      await scanner.close();
    }
  });

  it('a pid re-used by a process in another namespace is not entered', async () => {
    // An entry claiming our own process is in the named namespace: the descriptor's inode says no.
    const entry: NetnsEntry = {
      inode: namedInode + 1_000_000,
      path: `/proc/${process.pid}/ns/net`,
      self: false,
      pids: [process.pid],
      comm: 'x',
    };
    const scanner = new NamespaceScanner();
    try {
      const [scan] = await scanner.scan(LISTEN, { entries: [entry] });
      expect(scan!.error).toMatchObject({ code: 'ENOENT' });
      expect(scanner.openNamespaces).toEqual([]);
    } finally {
      await scanner.close();
    }
  });

  it('bad options reject the scan; a bad constructor option throws', async () => {
    const scanner = new NamespaceScanner();
    await expect(scanner.scan({ states: ['nonsense' as 'listen'] })).rejects.toThrow(/states/);
    expect(() => new NamespaceScanner({ concurrency: 0 })).toThrow(RangeError);
    expect(() => new NamespaceScanner({ nope: 1 } as never)).toThrow(/nope/);
    await scanner.close();
  });

  it('concurrency 2 gives the same namespaces', async () => {
    const a = new NamespaceScanner({ concurrency: 2 });
    try {
      const scans = await a.scan(LISTEN);
      expect(listens(of(scans, namedInode), Number(named.firstLine))).toBe(true);
      expect(scans[0]!.netns.self).toBe(true);
    } finally {
      await a.close();
    }
  });

  it('an unprivileged user: EPERM for the namespaces it cannot enter, its own still scanned', async () => {
    const hidden = await inNewNetns('import time; print("up", flush=True); time.sleep(3600)');
    const hiddenInode = netnsInode(`/proc/${hidden.pid}/ns/net`);
    const child = nodeAsNobody(
      'netns/index.js',
      `const s = new m.NamespaceScanner();
       s.scan({ tcp: true }).then((scans) => {
         for (const x of scans) console.log(JSON.stringify({ inode: x.netns.inode, self: x.netns.self, ok: !!x.result, code: x.error && x.error.code, message: x.error && x.error.message }));
         return s.close();
       }, (e) => { console.log('rejected ' + e.message); process.exitCode = 1; });`,
    );
    expect(child.status, child.stderr).toBe(0);
    const rows = child.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { inode: number; self: boolean; ok: boolean; code?: string; message?: string });
    expect(rows[0]).toMatchObject({ self: true, ok: true });
    // Without CAP_SYS_PTRACE it cannot read other users' /proc/PID/ns/net, but the named namespace's
    // file under /var/run/netns is there for everyone: found, and refused.
    const namedRow = rows.find((r) => r.inode === namedInode)!;
    expect(namedRow).toMatchObject({ ok: false, code: 'EPERM' });
    expect(namedRow.message).toMatch(new RegExp(`/var/run/netns/${NAME}: permission denied.*CAP_SYS_ADMIN`));
    expect(rows.some((r) => r.inode === hiddenInode)).toBe(false); // root's process: its ns link is not readable
    await stopHolder(hidden);
  });
});
