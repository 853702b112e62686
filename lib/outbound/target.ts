// Choosing the .NET process to collect from, and reading its settings.
//
// Settings (COMPUTERNAME, DIAGNOSTICS_AZUREBLOBCONTAINERSASURL) come from our own environment, else
// from the target's /proc/PID/environ, as the original script read them. With several .NET
// processes and no --pid, the one owning the most outbound connections (its /proc/PID/fd socket
// inodes against the same per-destination scan) is chosen.
import { listDotnetProcesses, readProcessEnv, type DotnetProcess } from '../dotnet/discovery';
import type { PortSpec, Sampler } from '../sampler';
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
}

export interface TargetChoice {
  chosen: DotnetProcess | undefined;
  candidates: CandidateCount[];
  /** Why this one, for the log. */
  reason: string;
}

/** Outbound connections owned by one process. */
export async function countOwnedConnections(
  sampler: Sampler,
  pid: number,
  options: { excludeLocalPorts: readonly PortSpec[]; states?: readonly string[] },
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

function describe(p: DotnetProcess): string {
  const cmd = p.cmdline.length > 0 ? p.cmdline.join(' ') : p.comm;
  return `pid ${p.pid} (${cmd.length > 80 ? `${cmd.slice(0, 77)}...` : cmd})`;
}

/** Picks among the .NET processes found by their diagnostics sockets. */
export async function chooseDotnetTarget(
  sampler: Sampler,
  options: { excludeLocalPorts: readonly PortSpec[]; states?: readonly string[]; processes?: DotnetProcess[] },
): Promise<TargetChoice> {
  const processes = (options.processes ?? (await listDotnetProcesses())).filter((p) => p.pid !== process.pid);
  if (processes.length === 0) return { chosen: undefined, candidates: [], reason: 'no .NET process found (no dotnet-diagnostic-*-socket)' };
  const candidates: CandidateCount[] = [];
  for (const p of processes) {
    let outbound = 0;
    try {
      outbound = await countOwnedConnections(sampler, p.pid, options);
    } catch {
      outbound = 0; // gone, or its fds are not ours to read
    }
    candidates.push({ process: p, outbound });
  }
  candidates.sort((a, b) => b.outbound - a.outbound || a.process.pid - b.process.pid);
  const chosen = candidates[0]!.process;
  const reason =
    candidates.length === 1
      ? `the only .NET process: ${describe(chosen)}, ${candidates[0]!.outbound} outbound connections`
      : `${describe(chosen)} owns the most outbound connections (${candidates[0]!.outbound}) of ${candidates.length} .NET processes: ` +
        candidates.map((c) => `pid ${c.process.pid}: ${c.outbound}`).join(', ');
  return { chosen, candidates, reason };
}
