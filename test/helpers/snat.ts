// For the `sockwatch snat` tests: the environment it reads, its log files, a pid no longer running.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Read by `sockwatch snat` from its environment: unset in the CLI's unless a test sets them. */
export const SNAT_ENV = [
  'COMPUTERNAME',
  'DIAGNOSTICS_AZUREBLOBCONTAINERSASURL',
  'SOCKWATCH_UPLOAD_BLOCK_SIZE',
  'SOCKWATCH_UPLOAD_CONCURRENCY',
  'SOCKWATCH_FLEET_LEASE_SECONDS',
];

/** All text (or JSON-lines) logs of an instance, concatenated (a run may cross an hour); '' if there are none yet. */
export function readLogs(logDir: string, instance: string, ext: 'log' | 'jsonl'): string {
  const dir = path.join(logDir, `outconn-logs-${instance}`);
  if (!fs.existsSync(dir)) return '';
  return fs
    .readdirSync(dir)
    .filter((n) => n.endsWith(`.${ext}`))
    .sort()
    .map((n) => fs.readFileSync(path.join(dir, n), 'utf8'))
    .join('');
}

/** The records of an instance's JSON-lines logs. */
export function jsonRecords(logDir: string, instance: string): Record<string, unknown>[] {
  return readLogs(logDir, instance, 'jsonl')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The pid of a process that has exited. */
export function deadPid(): number {
  return Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
}
