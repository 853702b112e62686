// .NET diagnostics over the runtime's IPC socket: discovery, process info, dumps, EventPipe traces.
// No dotnet-dump / dotnet-trace binaries: we speak the protocol ourselves (see wire.ts, ipc.ts).

export {
  listDotnetProcesses,
  findDiagnosticSocket,
  readProcessEnv,
  resolveTarget,
  type DotnetEndpoint,
  type DotnetProcess,
  type DotnetTarget,
} from './discovery';
export { DiagnosticsIpcError, describeHresult, formatHresult, HRESULT } from './hresult';
export { sendCommand, type IpcCallOptions } from './ipc';
export { getProcessInfo, type DotnetProcessInfo } from './process-info';
export { writeDump, type WriteDumpOptions, type DumpResult } from './dump';
export { parseDumpType, type DumpTypeName } from './dump-types';
export { InsufficientDiskSpaceError, estimateDumpBytes, readMemoryFootprint, type MemoryFootprint, type StatfsFn } from './dump-space';
export {
  collectTrace,
  DEFAULT_TRACE_PROVIDERS,
  formatProviderArguments,
  type CollectTraceOptions,
  type EventPipeProvider,
  type TraceResult,
} from './trace';
export { dumpFileName, traceFileName, fileTimestamp } from './file-names';
