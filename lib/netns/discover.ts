// Every network namespace of the host, as /proc and /var/run/netns show them. Rules:
// - A namespace is identified by its inode (the number in `net:[N]`, as `ip netns identify` and
//   `lsns` use); entries are de-duplicated by it.
// - /proc/PID/ns/net of every process (readlink: no open, no setns). What cannot be read is skipped: a
//   process that exits mid-walk (ENOENT, ESRCH), one we may not inspect (EACCES without
//   CAP_SYS_PTRACE). So without privileges only the namespaces of our own processes are seen, and in
//   a pid namespace of our own (a container without hostPID) only that pid namespace's processes.
//   Threads (/proc/PID/task/TID) are not walked: a thread that entered another namespace on its own is
//   not a holder.
// - /var/run/netns/* (iproute2's named namespaces, bind mounts of nsfs files): stat for the inode,
//   kept only when the file is on nsfs (same device as a /proc ns file), so a stale plain file left by
//   an unmounted name is ignored. A named namespace with no process is found only there.
// - The path given for a namespace is the named file when there is one (it lives as long as the
//   name), else /proc/LOWEST_PID/ns/net. Either is accepted by the Sampler's `netns` option; a pid's
//   path stops working when that process exits (NamespaceScanner then tries the others in `pids`).
// - Owner: the representative process is the lowest pid (the oldest, unless pids wrapped) that is
//   not a kernel thread and not named "pause" (the sandbox holder of a pod, the usual lowest), else
//   the lowest that is not a kernel thread, else the lowest; its comm and its cgroup give `comm`,
//   `podUid` and `containerId` (the pod UID from the next processes when the representative's cgroup
//   names none). Lowest pid rather than oldest start time: /proc/PID/stat costs ~60 µs a read, and
//   sorting by start time would read it for every process of the host on every discovery (170 ms
//   at 2,200 processes measured here); this way a namespace costs a few reads (at most 32 stat and 8
//   cgroup reads), the walk itself one readlink per process: 28 ms for 2,275 processes in 54
//   namespaces on a loaded 2-core VM, nearly all of it the kernel's readlink.
import * as fs from 'node:fs';
import { PF_KTHREAD, parseProcStat } from '../base/proc';
import { parseCgroupFile } from './cgroup';

export interface NetnsEntry {
  /** The namespace's inode (`net:[inode]`): its identity while it exists. */
  inode: number;
  /** A file to enter it by (Sampler's `netns` option): /var/run/netns/NAME, else /proc/PID/ns/net. */
  path: string;
  /** True for the namespace this process is in (scanned without the `netns` option). */
  self: boolean;
  /** Processes in it, ascending (empty for a named namespace no process is in). */
  pids: number[];
  /** Name of the representative process (see the rule at the top); '' when no process is in it. */
  comm: string;
  /** Kubernetes pod UID (dashes), from the cgroups of its processes. */
  podUid?: string;
  /** Container id (64 hex digits) of the representative process. */
  containerId?: string;
  /** The iproute2 name when it is bound under /var/run/netns. */
  name?: string;
}

export interface DiscoverOptions {
  /** Where proc is mounted (default /proc). */
  procRoot?: string;
  /** iproute2's directory of named namespaces (default /var/run/netns). */
  runNetnsDir?: string;
}

const NET_LINK = /^net:\[(\d+)\]$/;

/** The inode in a /proc/PID/ns/net link; undefined when it cannot be read. */
function linkInode(file: string): number | undefined {
  try {
    const m = NET_LINK.exec(fs.readlinkSync(file));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'latin1');
  } catch {
    return undefined;
  }
}

interface ProcFacts {
  pid: number;
  comm: string;
  kernelThread: boolean;
}

function procFacts(procRoot: string, pid: number): ProcFacts | undefined {
  const st = parseProcStat(readText(`${procRoot}/${pid}/stat`));
  if (!st) return undefined; // gone
  return { pid, comm: st.comm, kernelThread: (st.flags & PF_KTHREAD) !== 0 };
}

/** Bounds on the /proc reads per namespace (a stat read costs ~60 µs; see the rule at the top). */
const MAX_STAT_READS = 32;
const MAX_CGROUP_READS = 8;

/** comm, podUid, containerId of the processes `pids` (ascending), by the rule at the top. */
function ownerOf(procRoot: string, pids: readonly number[]): Pick<NetnsEntry, 'comm' | 'podUid' | 'containerId'> {
  let rep: ProcFacts | undefined;
  let firstUser: ProcFacts | undefined;
  let first: ProcFacts | undefined;
  let reads = 0;
  for (const pid of pids) {
    if (++reads > MAX_STAT_READS) break;
    const f = procFacts(procRoot, pid);
    if (!f) continue;
    first ??= f;
    if (f.kernelThread) continue;
    firstUser ??= f;
    if (f.comm !== 'pause') {
      rep = f;
      break;
    }
  }
  rep ??= firstUser ?? first;
  if (!rep) return { comm: '' };
  const out: Pick<NetnsEntry, 'comm' | 'podUid' | 'containerId'> = { comm: rep.comm };
  const repOwner = parseCgroupFile(readText(`${procRoot}/${rep.pid}/cgroup`) ?? '');
  if (repOwner.containerId !== undefined) out.containerId = repOwner.containerId;
  if (repOwner.podUid !== undefined) out.podUid = repOwner.podUid;
  else {
    for (const pid of pids.filter((p) => p !== rep.pid).slice(0, MAX_CGROUP_READS)) {
      const o = parseCgroupFile(readText(`${procRoot}/${pid}/cgroup`) ?? '');
      if (o.podUid !== undefined) {
        out.podUid = o.podUid;
        break;
      }
    }
  }
  return out;
}

/** Named namespaces: inode → name (the first name, by sort order, when one is bound twice). */
function namedNamespaces(dir: string, nsfsDev: number | undefined): Map<number, string> {
  const out = new Map<number, string>();
  let names: string[];
  try {
    names = fs.readdirSync(dir).sort();
  } catch {
    return out;
  }
  for (const name of names) {
    try {
      const st = fs.statSync(`${dir}/${name}`);
      if (nsfsDev !== undefined && st.dev !== nsfsDev) continue; // not a bound namespace
      if (!out.has(st.ino)) out.set(st.ino, name);
    } catch {
      /* removed meanwhile, or not ours to see */
    }
  }
  return out;
}

/**
 * Every network namespace of the host that /proc and `runNetnsDir` show (see the rules at the top):
 * our own first, then by inode. Never throws for a process that exits or cannot be read.
 */
export function discoverNetworkNamespaces(opts: DiscoverOptions = {}): NetnsEntry[] {
  const procRoot = opts.procRoot ?? '/proc';
  const runNetnsDir = opts.runNetnsDir ?? '/var/run/netns';
  const selfInode = linkInode(`${procRoot}/self/ns/net`);
  let nsfsDev: number | undefined;
  try {
    nsfsDev = fs.statSync(`${procRoot}/self/ns/net`).dev;
  } catch {
    nsfsDev = undefined;
  }
  const pidsOf = new Map<number, number[]>();
  let names: string[] = [];
  try {
    names = fs.readdirSync(procRoot);
  } catch {
    names = [];
  }
  for (const name of names) {
    if (!/^[1-9]\d*$/.test(name)) continue;
    const inode = linkInode(`${procRoot}/${name}/ns/net`);
    if (inode === undefined) continue;
    const list = pidsOf.get(inode);
    if (list) list.push(Number(name));
    else pidsOf.set(inode, [Number(name)]);
  }
  const named = namedNamespaces(runNetnsDir, nsfsDev);
  const inodes = new Set<number>([...pidsOf.keys(), ...named.keys()]);
  if (selfInode !== undefined) inodes.add(selfInode);
  const out: NetnsEntry[] = [];
  for (const inode of inodes) {
    const pids = (pidsOf.get(inode) ?? []).sort((a, b) => a - b);
    const name = named.get(inode);
    const self = inode === selfInode;
    const path =
      name !== undefined ? `${runNetnsDir}/${name}` : pids.length > 0 ? `${procRoot}/${pids[0]}/ns/net` : `${procRoot}/self/ns/net`;
    const entry: NetnsEntry = { inode, path, self, pids, ...ownerOf(procRoot, pids) };
    if (name !== undefined) entry.name = name;
    out.push(entry);
  }
  out.sort((a, b) => Number(b.self) - Number(a.self) || a.inode - b.inode);
  return out;
}
