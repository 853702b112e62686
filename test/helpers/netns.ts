// Network namespaces the tests create (root and iproute2's `ip`, util-linux's `unshare`): a named one
// (`ip netns add`) and unnamed ones (`unshare -n`, held only by the process started in it), each
// with a TCP listener on 127.0.0.1 held by a python3 process. cleanupNetns() kills every process
// started here and deletes every named namespace.
import { execFileSync, spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';

export const canNetns =
  process.getuid?.() === 0 && spawnSync('ip', ['-V']).status === 0 && spawnSync('unshare', ['--version']).status === 0;

const children = new Set<ChildProcess>();
const names = new Set<string>();

/** A python3 script that listens on 127.0.0.1, prints its port, then sleeps (`prelude` runs first). */
export function listenerScript(prelude = ''): string {
  return `import socket, time, ctypes, os
${prelude}
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
time.sleep(3600)
`;
}

export interface Holder {
  child: ChildProcess;
  pid: number;
  /** The first line the process printed (the listener's port, for listenerScript). */
  firstLine: string;
}

/** Starts `cmd`, waits for its first stdout line. */
export async function startHolder(cmd: string[]): Promise<Holder> {
  const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const lines = readline.createInterface({ input: child.stdout! });
  const firstLine = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`${cmd.join(' ')} exited ${code}: ${stderr}`)));
  });
  return { child, pid: child.pid!, firstLine: firstLine.trim() };
}

/** A process in a new unnamed network namespace (lo up) running a python3 script. */
export function inNewNetns(script: string): Promise<Holder> {
  return startHolder(['unshare', '-n', 'sh', '-c', 'ip link set lo up && exec python3 -c "$0"', script]);
}

/** A named namespace (lo up); its listener process when `script` is given. */
export async function namedNetns(name: string, script?: string): Promise<Holder | undefined> {
  execFileSync('ip', ['netns', 'add', name]);
  names.add(name);
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return script === undefined ? undefined : startHolder(['ip', 'netns', 'exec', name, 'python3', '-c', script]);
}

export function deleteNamedNetns(name: string): void {
  spawnSync('ip', ['netns', 'del', name]);
  names.delete(name);
}

/** Kills a holder and waits until it is gone. */
export async function stopHolder(h: Holder): Promise<void> {
  if (h.child.exitCode === null && h.child.signalCode === null) {
    const exited = new Promise((r) => h.child.once('exit', r));
    h.child.kill('SIGKILL');
    await exited;
  }
}

/** The inode of a namespace file (/proc/PID/ns/net, /var/run/netns/NAME). */
export function netnsInode(file: string): number {
  return fs.statSync(file).ino;
}

export async function cleanupNetns(): Promise<void> {
  await Promise.all([...children].map((child) => stopHolder({ child, pid: child.pid!, firstLine: '' })));
  for (const name of [...names]) deleteNamedNetns(name);
}

/** SIGKILL to a process that may be gone already (a forked grandchild the tests do not own). */
export function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}

/**
 * Runs `script` in a Node child as uid/gid 65534 (nobody, no capabilities); `dist` names the
 * compiled module the script gets as `m` (e.g. 'sampler.js', 'netns/index.js').
 */
export function nodeAsNobody(dist: string, script: string): SpawnSyncReturns<string> {
  const file = path.join(__dirname, '..', '..', 'dist', dist);
  const code = `process.setgid(65534); process.setuid(65534);\nconst m = require(${JSON.stringify(file)});\n${script}`;
  return spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
}
