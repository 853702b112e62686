// Choosing the .NET process to collect from, and reading its settings.
//
// Settings (COMPUTERNAME, DIAGNOSTICS_AZUREBLOBCONTAINERSASURL) come from our own environment, else
// from the target's /proc/PID/environ, as the original script read them. With several .NET
// processes and no --pid, the one with the most outbound connections is chosen, counted as
// lib/outbound/attribution.ts says: a candidate alone in a network namespace other than ours is
// scored by that whole namespace (TIME_WAIT included: the classic new-HttpClient-per-request app),
// the others by the sockets they own (their /proc/PID/fd inodes against the per-destination scan).
import { listDotnetProcesses, readProcessEnv, type DotnetProcess } from '../dotnet/discovery';
import { Sampler, type PortSpec, type StateListName } from '../sampler';
import { netnsIdOf, netnsIdOfPath, netnsPath, type AttributionMode } from './attribution';
import { socketInodes } from './process-sockets';
import { OUTBOUND_STATES } from './watcher';

export interface SettingValue {
  value: string | undefined;
  /** Where it was found. */
  source: 'environment' | 'target' | 'none';
}

/** A variable from `env`, else from the environment of process `pid` (unreadable → not found). */
export function resolveSetting(name: string, env: NodeJS.ProcessEnv, pid: number | undefined): SettingValue {
  const own = env[name];
  if (own !== undefined && own !== '') return { value: own, source: 'environment' };
  if (pid !== undefined) {
    try {
      const v = readProcessEnv(pid).get(name);
      if (v !== undefined && v !== '') return { value: v, source: 'target' };
    } catch {
      // gone or not readable
    }
  }
  return { value: undefined, source: 'none' };
}

export interface CandidateCount {
  process: DotnetProcess;
  /** Outbound connections it owns (counted states, excluded ports left out). */
  outbound: number;
  /** How they were counted: its own network namespace, or the sockets it holds. */
  basis: AttributionMode;
}

export interface TargetChoice {
  chosen: DotnetProcess | undefined;
  candidates: CandidateCount[];
  /** Why this one, for the log. */
  reason: string;
}

/** Outbound connections of a whole network namespace (a sampler entered into it). */
export async function countNamespaceConnections(
  netns: string,
  options: { excludeLocalPorts: readonly PortSpec[]; states?: readonly StateListName[] },
): Promise<number> {
  const states = options.states ?? OUTBOUND_STATES;
  const sampler = new Sampler({ netns });
  try {
    const r = await sampler.sample({
      tcp: true,
      states,
      excludeLocalPorts: options.excludeLocalPorts,
      maxRecords: 0,
      aggregate: { states },
    });
    return r.aggregates.reduce((sum, a) => sum + a.total, 0);
  } finally {
    await sampler.close();
  }
}

/** Outbound connections owned by one process (its sockets must be in `sampler`'s namespace). */
export async function countOwnedConnections(
  sampler: Sampler,
  pid: number,
  options: { excludeLocalPorts: readonly PortSpec[]; states?: readonly StateListName[] },
): Promise<number> {
  const inodes = socketInodes(pid);
  if (inodes === undefined || inodes.length === 0) return 0;
  const states = options.states ?? OUTBOUND_STATES;
  const r = await sampler.sample({
    tcp: true,
    states,
    excludeLocalPorts: options.excludeLocalPorts,
    maxRecords: 0,
    aggregate: { states, ownerInodes: inodes },
  });
  return r.aggregates.reduce((sum, a) => sum + a.total, 0);
}

function basisText(c: CandidateCount): string {
  return c.basis === 'namespace' ? ' in its own network namespace' : '';
}

function describe(p: DotnetProcess): string {
  const cmd = p.cmdline.length > 0 ? p.cmdline.join(' ') : p.comm;
  return `pid ${p.pid} (${cmd.length > 80 ? `${cmd.slice(0, 77)}...` : cmd})`;
}

/** Picks among the .NET processes found by their diagnostics sockets. */
export async function chooseDotnetTarget(
  sampler: Sampler,
  options: { excludeLocalPorts: readonly PortSpec[]; states?: readonly StateListName[]; processes?: DotnetProcess[] },
): Promise<TargetChoice> {
  const processes = (options.processes ?? (await listDotnetProcesses())).filter((p) => p.pid !== process.pid);
  if (processes.length === 0) return { chosen: undefined, candidates: [], reason: 'no .NET process found (no dotnet-diagnostic-*-socket)' };
  const ours = netnsIdOfPath(sampler.netns ?? netnsPath('self'));
  const nsOf = new Map(processes.map((p) => [p.pid, netnsIdOf(p.pid)]));
  const perNs = new Map<string, number>();
  for (const ns of nsOf.values()) if (ns !== undefined) perNs.set(ns, (perNs.get(ns) ?? 0) + 1);
  const candidates: CandidateCount[] = [];
  for (const p of processes) {
    const ns = nsOf.get(p.pid);
    const ownNamespace = ns !== undefined && ours !== undefined && ns !== ours && perNs.get(ns) === 1;
    let outbound = 0;
    try {
      if (ownNamespace) outbound = await countNamespaceConnections(netnsPath(p.pid), options);
      else if (ns !== undefined && ns !== ours) {
        // Shares a foreign namespace with another candidate: its own sockets, seen from inside.
        const inside = new Sampler({ netns: netnsPath(p.pid) });
        try {
          outbound = await countOwnedConnections(inside, p.pid, options);
        } finally {
          await inside.close();
        }
      } else outbound = await countOwnedConnections(sampler, p.pid, options);
    } catch {
      outbound = 0; // gone, or its fds or namespace are not ours to read
    }
    candidates.push({ process: p, outbound, basis: ownNamespace ? 'namespace' : 'process' });
  }
  candidates.sort((a, b) => b.outbound - a.outbound || a.process.pid - b.process.pid);
  const chosen = candidates[0]!.process;
  const reason =
    candidates.length === 1
      ? `the only .NET process: ${describe(chosen)}, ${candidates[0]!.outbound} outbound connections${basisText(candidates[0]!)}`
      : `${describe(chosen)} owns the most outbound connections (${candidates[0]!.outbound}${basisText(candidates[0]!)}) of ${candidates.length} .NET processes: ` +
        candidates.map((c) => `pid ${c.process.pid}: ${c.outbound}${c.basis === 'namespace' ? ' (its namespace)' : ''}`).join(', ');
  return { chosen, candidates, reason };
}
