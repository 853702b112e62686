// Which connections count as one process's (--pid). Rule: count what the kernel lets us attribute.
// - A socket in TIME_WAIT has no inode and no owner; a connection opened and closed between two polls
//   is never seen with an inode at all. So per-process attribution (live sockets + remembered
//   cookies) misses the classic SNAT pattern (a new HttpClient per request) entirely.
// - A network namespace, though, holds every socket of the processes in it, TIME_WAIT included.
//   When the target has a namespace of its own, the namespace count IS its count:
//   * target in another namespace than the sampler's (a container seen from the host): enter it
//     (/proc/PID/ns/net) and count the whole namespace;
//   * target in the sampler's namespace and no other process there holds a TCP socket (listening or
//     connected) on a local port that is not excluded (sockwatch in the app's container: App Service
//     SSH session, whose sshd is on the excluded 2222; a sidecar): count the whole namespace.
// - Only when other processes in the sampler's namespace hold such sockets (other apps, and on a host
//   always: sshd, resolvers...) does it fall back to 'process': live sockets (fd inodes) + the
//   cookies seen at earlier polls. sockwatch itself is not another app.
// Namespaces are compared by the inode of /proc/PID/ns/net (and its device), as `ip netns identify`.
import * as fs from 'node:fs';
import type { PortSpec, Sampler } from '../sampler';
import { FULL_SOCKET_STATES } from '../states';

export type AttributionMode = 'namespace' | 'process';

export interface Attribution {
  mode: AttributionMode;
  /** Whether the target's namespace differs from the one the sampler sees (it must be entered). */
  foreign: boolean;
  /** Why, for the log: one sentence. */
  reason: string;
}

/** The identity (`dev:ino`) of a network namespace file; undefined when it cannot be read (process gone). */
export function netnsIdOfPath(file: string): string | undefined {
  try {
    const st = fs.statSync(file);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/** The network namespace file of a process. */
export function netnsPath(pid: number | 'self'): string {
  return `/proc/${pid}/ns/net`;
}

/** The identity of a process's network namespace, undefined when it is gone or not ours to see. */
export function netnsIdOf(pid: number | 'self'): string | undefined {
  return netnsIdOfPath(netnsPath(pid));
}

/** Socket inodes behind /proc/PID/fd; undefined when the process is gone or its fds are not readable. */
function socketInodesOrUndefined(pid: number): number[] | undefined {
  let fds: string[];
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return undefined;
  }
  const out: number[] = [];
  for (const fd of fds) {
    let link: string;
    try {
      link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) out.push(Number(m[1]));
  }
  return out;
}

/** The other processes of namespace `nsId` (not in `exclude`), with the socket inodes each holds. */
export function otherProcessesInNetns(nsId: string, exclude: ReadonlySet<number>): { pid: number; inodes: number[] | undefined }[] {
  let names: string[];
  try {
    names = fs.readdirSync('/proc');
  } catch {
    return [];
  }
  const out: { pid: number; inodes: number[] | undefined }[] = [];
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (exclude.has(pid)) continue;
    if (netnsIdOf(pid) !== nsId) continue;
    out.push({ pid, inodes: socketInodesOrUndefined(pid) });
  }
  return out;
}

export interface AttributionInput {
  pid: number;
  /** Sampler of the namespace sockwatch sees (the shared-namespace check scans through it). */
  sampler: Sampler;
  excludeLocalPorts: readonly PortSpec[];
}

/** TCP states whose sockets have an owner (an inode); TIME_WAIT and SYN_RECV sockets have none. */
const LIVE_STATES = FULL_SOCKET_STATES;

/**
 * Decides how to count the connections of `pid` (see the rule at the top). Never throws for a gone
 * process: it answers 'process' then (its remaining cookies are all there is).
 */
export async function decideAttribution(input: AttributionInput): Promise<Attribution> {
  const { pid, sampler } = input;
  const viewNs = netnsIdOfPath(sampler.netns ?? netnsPath('self'));
  const targetNs = netnsIdOf(pid);
  if (targetNs === undefined || viewNs === undefined) {
    return { mode: 'process', foreign: false, reason: `the network namespace of process ${pid} cannot be read` };
  }
  if (targetNs !== viewNs) {
    return {
      mode: 'namespace',
      foreign: true,
      reason: `process ${pid} has a network namespace of its own (${netnsPath(pid)}): counting that whole namespace, TIME_WAIT included`,
    };
  }
  const own = new Set(socketInodesOrUndefined(pid) ?? []);
  const ours = [...own, ...(socketInodesOrUndefined(process.pid) ?? [])];
  const others = otherProcessesInNetns(targetNs, new Set([pid, process.pid]));
  let unreadable = 0;
  for (const o of others) if (o.inodes === undefined) unreadable++;
  const tcpSockets = async (owners?: number[]): Promise<number> => {
    const r = await sampler.sample({
      tcp: true,
      states: [...LIVE_STATES],
      excludeLocalPorts: input.excludeLocalPorts,
      maxRecords: 0,
      aggregate: { states: [...LIVE_STATES], ...(owners ? { ownerInodes: owners } : {}) },
    });
    return r.aggregates.reduce((sum, a) => sum + a.total, 0);
  };
  // Every live TCP socket on a port not excluded, against those of the target and sockwatch: the rest
  // belong to someone else, seen in /proc or not (a process of another pid namespace, fds we may not
  // read). Counting what is NOT ours keeps an invisible owner from passing for "no other process".
  const counted = (await tcpSockets()) - (ours.length > 0 ? await tcpSockets(ours) : 0);
  const holders = new Set<number>();
  if (counted > 0) {
    // Name (a few of) the visible processes that hold them, for the log.
    for (const o of others) {
      if (holders.size >= 5 || o.inodes === undefined || o.inodes.length === 0) continue;
      if ((await tcpSockets(o.inodes.filter((i) => !own.has(i)))) > 0) holders.add(o.pid);
    }
  }
  const notReadable = unreadable > 0 ? ` (${unreadable} process(es) whose sockets could not be read were not checked)` : '';
  if (counted > 0) {
    return {
      mode: 'process',
      foreign: false,
      reason:
        `the network namespace of process ${pid} is shared with other processes holding ${counted} TCP socket(s) on ports not excluded ` +
        `(${holders.size > 0 ? `pid ${[...holders].join(', ')}${holders.size >= 5 ? ', ...' : ''}` : 'owners not visible from here'}): counting only its live sockets and the ones seen ` +
        `at earlier polls (connections opened and closed between two polls, and their TIME_WAIT, are missed)${notReadable}`,
    };
  }
  return {
    mode: 'namespace',
    foreign: false,
    reason: `no other process in the network namespace of process ${pid} holds a TCP socket on a port not excluded: counting that whole namespace, TIME_WAIT included${notReadable}`,
  };
}
