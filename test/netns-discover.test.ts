// Discovery of every network namespace, against namespaces and cgroups this test creates (root,
// iproute2, util-linux unshare; the cgroup cases need a writable cgroup hierarchy, as on CI here).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { discoverNetworkNamespaces, type NetnsEntry } from '../lib/netns';
import { canNetns, cleanupNetns, deleteNamedNetns, inNewNetns, killPid, namedNetns, netnsInode, stopHolder } from './helpers/netns';

const NAME = `sw-disc-${process.pid}`;

afterAll(cleanupNetns);

const byInode = (list: NetnsEntry[], inode: number) => list.find((e) => e.inode === inode);

/** The mount point of a cgroup hierarchy: v2, or v1 with the `pids` controller. */
function cgroupMount(kind: 'v2' | 'v1-pids'): string | undefined {
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const mountPoint = left.split(' ')[4]!;
    const [fstype, , superOptions] = right.split(' ');
    if (kind === 'v2' && fstype === 'cgroup2') return mountPoint;
    if (kind === 'v1-pids' && fstype === 'cgroup' && superOptions?.split(',').includes('pids')) return mountPoint;
  }
  return undefined;
}

/** Creates `dir` (and parents), moves `pid` into it; returns the directories to remove, deepest first. */
function moveIntoCgroup(root: string, rel: string, pid: number): string[] {
  const dirs: string[] = [];
  let d = root;
  for (const part of rel.split('/')) {
    d = path.join(d, part);
    if (!fs.existsSync(d)) {
      fs.mkdirSync(d);
      dirs.unshift(d);
    }
  }
  fs.writeFileSync(path.join(d, 'cgroup.procs'), String(pid));
  return dirs;
}

function removeCgroups(dirs: string[]): void {
  for (const d of dirs) {
    for (let i = 0; i < 50; i++) {
      try {
        fs.rmdirSync(d);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EBUSY') break; // a killed process leaves a moment later
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
      }
    }
  }
}

const hex = (n: number, width: number) => n.toString(16).padStart(width, '0').slice(-width);
/** A pod UID and a container id unique to this test run. */
const POD_UID = `${hex(process.pid, 8)}-5e1f-4c0a-9b2d-${hex(Date.now(), 12)}`;
const CONTAINER = (n: number) => hex(process.pid, 8).repeat(7) + hex(n, 8);

function writableCgroup(kind: 'v2' | 'v1-pids'): string | undefined {
  const m = cgroupMount(kind);
  if (!m) return undefined;
  try {
    fs.accessSync(m, fs.constants.W_OK);
    return m;
  } catch {
    return undefined;
  }
}
const cgroupfsRoot = writableCgroup('v1-pids') ?? writableCgroup('v2');
const v2Root = writableCgroup('v2');

describe.skipIf(!canNetns)('discoverNetworkNamespaces', () => {
  it('finds our own, a named and an unnamed namespace by inode; a vanished one disappears', async () => {
    await namedNetns(NAME);
    const holder = await inNewNetns('import time; print("up", flush=True); time.sleep(3600)');
    const namedInode = netnsInode(`/var/run/netns/${NAME}`);
    const unnamedInode = netnsInode(`/proc/${holder.pid}/ns/net`);
    const selfInode = netnsInode('/proc/self/ns/net');
    expect(new Set([namedInode, unnamedInode, selfInode]).size).toBe(3);

    const list = discoverNetworkNamespaces();
    expect(list[0]).toMatchObject({ inode: selfInode, self: true });
    expect(list.filter((e) => e.self)).toHaveLength(1);
    expect(new Set(list.map((e) => e.inode)).size).toBe(list.length); // de-duplicated
    expect(byInode(list, selfInode)!.pids).toContain(process.pid);
    // A named namespace no process is in: found only through /var/run/netns.
    expect(byInode(list, namedInode)).toEqual({
      inode: namedInode,
      path: `/var/run/netns/${NAME}`,
      self: false,
      pids: [],
      comm: '',
      name: NAME,
    });
    const unnamed = byInode(list, unnamedInode)!;
    expect(unnamed).toMatchObject({ self: false, pids: [holder.pid], path: `/proc/${holder.pid}/ns/net`, comm: 'python3' });
    expect(unnamed.name).toBeUndefined();
    expect(netnsInode(unnamed.path)).toBe(unnamedInode);

    await stopHolder(holder);
    deleteNamedNetns(NAME);
    const after = discoverNetworkNamespaces();
    expect(byInode(after, unnamedInode)).toBeUndefined();
    expect(byInode(after, namedInode)).toBeUndefined();
    expect(byInode(after, selfInode)?.self).toBe(true);
  });

  it('a namespace held by several processes: one entry, every pid, the lowest pid in the path', async () => {
    // The python parent forks a child that stays in the namespace; both print nothing else.
    const holder = await inNewNetns(`import os, time
pid = os.fork()
if pid == 0:
    time.sleep(3600); os._exit(0)
print(pid, flush=True)
time.sleep(3600)`);
    const childPid = Number(holder.firstLine);
    try {
      const inode = netnsInode(`/proc/${holder.pid}/ns/net`);
      const e = byInode(discoverNetworkNamespaces(), inode)!;
      expect(e.pids).toEqual([holder.pid, childPid].sort((a, b) => a - b));
      expect(e.path).toBe(`/proc/${Math.min(holder.pid, childPid)}/ns/net`);
    } finally {
      killPid(childPid);
    }
  });

  it('ignores a stale file in the netns directory and a missing directory', async () => {
    const dir = fs.mkdtempSync('/tmp/sw netns dir-');
    try {
      fs.writeFileSync(path.join(dir, 'stale'), ''); // what a failed `ip netns del` can leave
      const list = discoverNetworkNamespaces({ runNetnsDir: dir });
      expect(list.some((e) => e.name === 'stale')).toBe(false);
      expect(discoverNetworkNamespaces({ runNetnsDir: path.join(dir, 'absent') }).length).toBeGreaterThan(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('processes exiting during the walk never make it throw', async () => {
    // A shell that starts and reaps short-lived processes as fast as it can, while discovery runs.
    const churn = spawn('sh', ['-c', 'while :; do /bin/true & /bin/true & wait; done'], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 40; i++) {
        const list = discoverNetworkNamespaces();
        expect(list.filter((e) => e.self)).toHaveLength(1);
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      churn.kill('SIGKILL');
    }
  });

  it.skipIf(!cgroupfsRoot)(
    'owner (cgroupfs driver path): pod UID and container id of the lowest-pid process that is not "pause"',
    async () => {
      // As in a pod: the sandbox process ("pause") holds the namespace, the app is forked into it.
      const holder = await inNewNetns(`import os, time, ctypes
libc = ctypes.CDLL(None)
libc.prctl(15, b'pause', 0, 0, 0)
pid = os.fork()
if pid == 0:
    libc.prctl(15, b'sw-test-app', 0, 0, 0)
    time.sleep(3600); os._exit(0)
print(pid, flush=True)
time.sleep(3600)`);
      const appPid = Number(holder.firstLine);
      const dirs: string[] = [];
      try {
        dirs.push(...moveIntoCgroup(cgroupfsRoot!, `kubepods/burstable/pod${POD_UID}/${CONTAINER(1)}`, holder.pid));
        dirs.unshift(...moveIntoCgroup(cgroupfsRoot!, `kubepods/burstable/pod${POD_UID}/${CONTAINER(2)}`, appPid));
        // prctl runs after fork in the child: wait until /proc shows the new name.
        for (let i = 0; i < 100 && fs.readFileSync(`/proc/${appPid}/comm`, 'utf8').trim() !== 'sw-test-app'; i++)
          await new Promise((r) => setTimeout(r, 10));
        const e = byInode(discoverNetworkNamespaces(), netnsInode(`/proc/${holder.pid}/ns/net`))!;
        expect(e).toMatchObject({ comm: 'sw-test-app', podUid: POD_UID, containerId: CONTAINER(2) });
      } finally {
        killPid(appPid);
        await stopHolder(holder);
        removeCgroups(dirs);
      }
    },
  );

  it.skipIf(!v2Root)('owner (systemd driver path, cgroup v2): underscores in the slice become dashes', async () => {
    const holder = await inNewNetns('import time; print("up", flush=True); time.sleep(3600)');
    let dirs: string[] = [];
    try {
      const slice = `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${POD_UID.replaceAll('-', '_')}.slice`;
      dirs = moveIntoCgroup(v2Root!, `${slice}/cri-containerd-${CONTAINER(3)}.scope`, holder.pid);
      const e = byInode(discoverNetworkNamespaces(), netnsInode(`/proc/${holder.pid}/ns/net`))!;
      expect(e).toMatchObject({ comm: 'python3', podUid: POD_UID, containerId: CONTAINER(3) });
    } finally {
      await stopHolder(holder);
      removeCgroups(dirs);
    }
  });

  it('a named namespace with a process in it: the name and the process', async () => {
    const holder = await namedNetns(NAME, 'import time; print("up", flush=True); time.sleep(3600)');
    try {
      const e = byInode(discoverNetworkNamespaces(), netnsInode(`/var/run/netns/${NAME}`))!;
      expect(e).toMatchObject({ name: NAME, path: `/var/run/netns/${NAME}`, pids: [holder!.pid], comm: 'python3' });
    } finally {
      await stopHolder(holder!);
      deleteNamedNetns(NAME);
    }
  });
});
