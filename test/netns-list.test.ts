// `sockwatch list --all-netns` end to end (the compiled CLI as a child process), with namespaces this
// test creates (root, iproute2, util-linux unshare and setpriv).
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killCliProcesses, runCli as run } from './helpers/cli';
import { canNetns, cleanupNetns, inNewNetns, listenerScript, namedNetns, netnsInode, type Holder } from './helpers/netns';

const NAME = `sw-list-${process.pid}`;
const canSetpriv = spawnSync('setpriv', ['--version']).status === 0;

interface JsonRow {
  netns: number;
  proto: string;
  state: string;
  local: string;
}
const jsonRows = (out: string): JsonRow[] =>
  out
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as JsonRow);

describe.skipIf(!canNetns)('sockwatch list --all-netns', () => {
  let unnamed: Holder;
  let unnamedInode = 0;
  let namedInode = 0;
  let namedPort = 0;

  beforeAll(async () => {
    const named = (await namedNetns(NAME, listenerScript()))!;
    namedPort = Number(named.firstLine);
    namedInode = netnsInode(`/var/run/netns/${NAME}`);
    unnamed = await inNewNetns(listenerScript());
    unnamedInode = netnsInode(`/proc/${unnamed.pid}/ns/net`);
  });
  afterAll(async () => {
    await killCliProcesses();
    await cleanupNetns();
  });

  it('JSON: each namespace’s listener with its namespace inode; our own namespace first', async () => {
    const r = await run(['list', '--all-netns', '--format', 'json', '--tcp', '--state', 'listen', '--src', '127.0.0.1']);
    expect(r.code, r.stderr).toBe(0);
    // Namespaces of other tests on this host may vanish between discovery and scan (one stderr line
    // each); ours may not.
    for (const l of r.stderr.split('\n').filter(Boolean)) {
      expect(l).toMatch(/^sockwatch: netns \d+: /);
      expect(l).not.toMatch(new RegExp(`netns (${unnamedInode}|${namedInode}):`));
    }
    const rows = jsonRows(r.stdout);
    const self = netnsInode('/proc/self/ns/net');
    const firstOther = rows.findIndex((x) => x.netns !== self);
    expect(rows.map((x) => x.netns).lastIndexOf(self)).toBeLessThan(firstOther); // ours first
    expect(rows).toContainEqual(
      expect.objectContaining({ netns: unnamedInode, proto: 'tcp', state: 'listen', local: `127.0.0.1:${unnamed.firstLine}` }),
    );
    expect(rows).toContainEqual(expect.objectContaining({ netns: namedInode, local: `127.0.0.1:${namedPort}` }));
    // The same socket never shows up under two namespaces.
    const keys = rows.map((x) => `${x.netns} ${x.local}`);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('table: a Netns column first, holding the inode', async () => {
    const r = await run(['list', '--all-netns', '--tcp', '--state', 'listen', '--sport', unnamed.firstLine]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^Netns\s+Netid\s+State\s+Recv-Q\s+Send-Q\s+Local Address:Port\s+Peer Address:Port\s+Uid\s+Inode$/);
    const ours = lines.slice(1).filter((l) => l.split(/\s+/)[5] === `127.0.0.1:${unnamed.firstLine}`);
    expect(ours.map((l) => l.split(/\s+/)[0])).toContain(String(unnamedInode));
    expect(ours.find((l) => l.startsWith(String(unnamedInode)))).toMatch(/^\d+\s+tcp\s+LISTEN\s+0\s+8\s/);
  });

  it('--all-netns with --netns: exit 2, one line', async () => {
    const r = await run(['list', '--all-netns', '--netns', NAME]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toEqual([
      'sockwatch: --all-netns and --netns cannot be combined: --all-netns already scans every namespace',
    ]);
  });

  it.skipIf(!canSetpriv)('--netns /proc/PID/ns/net of a root process, as a non-root user holding CAP_SYS_ADMIN and CAP_SYS_PTRACE', async () => {
    // The systemd unit's privileges (deploy/systemd): the open of another user's namespace file is
    // allowed by CAP_SYS_PTRACE, which access(2) would ignore (it checks with the real uid, no capabilities).
    const caps = '+sys_admin,+sys_ptrace';
    const r = await run(['list', '--netns', `/proc/${unnamed.pid}/ns/net`, '--format', 'json', '--tcp', '--state', 'listen'], {
      wrapper: ['setpriv', '--reuid', '65534', '--regid', '65534', '--clear-groups', `--inh-caps=${caps}`, `--ambient-caps=${caps}`],
    });
    expect(r.code, r.stderr).toBe(0);
    expect(jsonRows(r.stdout)).toContainEqual(expect.objectContaining({ state: 'listen', local: `127.0.0.1:${unnamed.firstLine}` }));
    // Without the capabilities the same command is refused with one line naming the namespace file.
    const denied = await run(['list', '--netns', `/proc/${unnamed.pid}/ns/net`, '--tcp'], {
      wrapper: ['setpriv', '--reuid', '65534', '--regid', '65534', '--clear-groups'],
    });
    expect(denied.code).not.toBe(0);
    expect(denied.stderr.trim().split('\n')).toHaveLength(1);
    expect(denied.stderr).toContain(`/proc/${unnamed.pid}/ns/net`);
  });

  it.skipIf(!canSetpriv)('unprivileged: one stderr line per namespace it cannot enter, our own listed, exit 0', async () => {
    const r = await run(['list', '--all-netns', '--format', 'json', '--tcp'], {
      wrapper: ['setpriv', '--reuid', '65534', '--regid', '65534', '--clear-groups'],
    });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^sockwatch: netns ${namedInode}: setns EPERM: .*CAP_SYS_ADMIN`)));
    for (const l of lines) expect(l).toMatch(/^sockwatch: netns \d+: /);
    const rows = jsonRows(r.stdout);
    expect(rows.length).toBeGreaterThan(0);
    expect(new Set(rows.map((x) => x.netns))).toEqual(new Set([netnsInode('/proc/self/ns/net')]));
  });
});
