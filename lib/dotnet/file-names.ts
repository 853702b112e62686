// Artifact names, as the original shell script made them: dump_{instance}_{YYYYmmdd_HHMMSS}.dmp and
// trace_{instance}_{YYYYmmdd_HHMMSS}.nettrace. Times are UTC (App Service instances run in UTC and
// blobs from several instances then sort consistently). The instance name (COMPUTERNAME on App
// Service) is made file-name safe by safeInstanceName (lib/base/instance-name.ts).
import { safeInstanceName as safeInstance } from '../base/instance-name';

/** YYYYmmdd_HHMMSS in UTC. */
export function fileTimestamp(date: Date = new Date()): string {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) throw new TypeError('date must be a valid Date');
  const p = (n: number) => String(n).padStart(2, '0');
  return (
    `${date.getUTCFullYear()}${p(date.getUTCMonth() + 1)}${p(date.getUTCDate())}_` +
    `${p(date.getUTCHours())}${p(date.getUTCMinutes())}${p(date.getUTCSeconds())}`
  );
}

export function dumpFileName(instance: string, date: Date = new Date()): string {
  return `dump_${safeInstance(instance)}_${fileTimestamp(date)}.dmp`;
}

export function traceFileName(instance: string, date: Date = new Date()): string {
  return `trace_${safeInstance(instance)}_${fileTimestamp(date)}.nettrace`;
}
