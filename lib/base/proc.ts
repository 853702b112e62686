// Facts about a process read from /proc/PID/stat. One parser, one rule: field 2 (comm) is the
// process name in parentheses and may itself hold spaces and ')' (a process can name itself
// "a) b"), so the fields after it are split from the LAST ')' in the line. The start time (field
// 22, clock ticks since boot) is kept as the decimal text the kernel wrote: it is compared, never
// computed with, and together with the pid (and the boot) it names one process.
import * as fs from 'node:fs';

/** The fields of /proc/PID/stat this project uses. */
export interface ProcStat {
  pid: number;
  /** Process name (field 2, without the parentheses). */
  comm: string;
  /** One-letter state (field 3): R, S, D, Z… */
  state: string;
  ppid: number;
  /** Field 9: the kernel's PF_* flags (PF_KTHREAD 0x00200000 marks a kernel thread). */
  flags: number;
  /** Field 22: start time in clock ticks since boot, as written by the kernel. */
  startTime: string;
}

/** Parses the text of /proc/PID/stat; undefined when it is not one. */
export function parseProcStat(text: string | undefined): ProcStat | undefined {
  if (!text) return undefined;
  const open = text.indexOf(' (');
  const close = text.lastIndexOf(')');
  if (open <= 0 || close < open) return undefined;
  const pid = Number(text.slice(0, open));
  // fields[0] is field 3 (state), so field N is fields[N - 3].
  const fields = text
    .slice(close + 2)
    .trimEnd()
    .split(' ');
  const startTime = fields[19];
  if (!Number.isSafeInteger(pid) || startTime === undefined || !/^\d+$/.test(startTime)) return undefined;
  return { pid, comm: text.slice(open + 2, close), state: fields[0]!, ppid: Number(fields[1]), flags: Number(fields[6]), startTime };
}

/** PF_KTHREAD in ProcStat.flags: the process is a kernel thread. */
export const PF_KTHREAD = 0x00200000;

/** Field 22 (start time, clock ticks since boot) of a /proc/PID/stat text. */
export function startTimeFromStat(text: string | undefined): string | undefined {
  return parseProcStat(text)?.startTime;
}

/** Start time of a running process; undefined when it does not exist or /proc cannot tell. */
export function processStartTime(pid: number, procRoot = '/proc'): string | undefined {
  try {
    return startTimeFromStat(fs.readFileSync(`${procRoot}/${pid}/stat`, 'latin1'));
  } catch {
    return undefined;
  }
}

/** False only when no process `pid` exists (ESRCH); a process we may not signal (EPERM) is alive. */
export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * Removes the files in `dir` that a process which no longer exists left behind: `pidOf(name)` gives
 * the pid a file name carries (undefined for a name that is not such a file). Our own and live
 * processes' files stay; an unreadable directory is left alone.
 */
export function removeFilesOfDeadProcesses(dir: string, pidOf: (name: string) => number | undefined): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = pidOf(name);
    if (pid === undefined || !Number.isInteger(pid) || pid === process.pid || pidExists(pid)) continue;
    fs.rmSync(`${dir}/${name}`, { force: true });
  }
}
