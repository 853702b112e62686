// Process command set: ProcessInfo3 → ProcessInfo2 → ProcessInfo, falling back on UNKNOWN_COMMAND.

import { isUnknownCommand } from './hresult';
import { sendCommand, type IpcCallOptions } from './ipc';
import { resolveTarget, type DotnetTarget } from './discovery';
import { Commands, PayloadReader, type IpcCommand } from './wire';

export interface DotnetProcessInfo {
  /** Pid as the runtime sees it (inside its pid namespace). */
  pid: number;
  /** Unique per runtime instance (a GUID). */
  runtimeCookie: string;
  commandLine: string;
  os: string;
  arch: string;
  /** Empty when only ProcessInfo (v1, .NET 5) is available. */
  entrypointAssembly: string;
  /** e.g. "10.0.12"; empty with ProcessInfo v1. */
  clrProductVersion: string;
  /** e.g. "linux-x64" (ProcessInfo3 version ≥ 1 only). */
  runtimeIdentifier?: string;
  /** Which command answered. */
  command: 'ProcessInfo3' | 'ProcessInfo2' | 'ProcessInfo';
}

/** Parses a ProcessInfo / ProcessInfo2 / ProcessInfo3 reply payload. */
export function parseProcessInfo(payload: Buffer, version: 1 | 2 | 3): DotnetProcessInfo {
  const cmd: IpcCommand = version === 3 ? Commands.ProcessInfo3 : version === 2 ? Commands.ProcessInfo2 : Commands.ProcessInfo;
  const r = new PayloadReader(payload, cmd.name);
  const layoutVersion = version === 3 ? r.u32('ProcessInfo3 version') : 0;
  const pid = r.u64('pid');
  const info: DotnetProcessInfo = {
    pid: Number(pid),
    runtimeCookie: r.guid('runtime cookie'),
    commandLine: r.string('command line'),
    os: r.string('os'),
    arch: r.string('arch'),
    entrypointAssembly: '',
    clrProductVersion: '',
    command: version === 3 ? 'ProcessInfo3' : version === 2 ? 'ProcessInfo2' : 'ProcessInfo',
  };
  if (version >= 2) {
    info.entrypointAssembly = r.string('managed entrypoint assembly');
    info.clrProductVersion = r.string('CLR product version');
  }
  if (version === 3 && layoutVersion >= 1) info.runtimeIdentifier = r.string('runtime identifier');
  return info;
}

/** Asks the runtime who it is. Tries ProcessInfo3, then 2, then 1 when the runtime does not know the newer command. */
export async function getProcessInfo(target: DotnetTarget, opts: IpcCallOptions = {}): Promise<DotnetProcessInfo> {
  const endpoint = await resolveTarget(target);
  const attempts: [IpcCommand, 1 | 2 | 3][] = [
    [Commands.ProcessInfo3, 3],
    [Commands.ProcessInfo2, 2],
    [Commands.ProcessInfo, 1],
  ];
  let lastError: unknown;
  for (const [cmd, version] of attempts) {
    try {
      return parseProcessInfo(await sendCommand(endpoint.socketPath, cmd, undefined, opts), version);
    } catch (err) {
      if (!isUnknownCommand(err)) throw err;
      lastError = err;
    }
  }
  throw lastError;
}
