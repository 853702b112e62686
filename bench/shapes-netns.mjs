// The network namespace of the host-shape and BPF runs (bench/shapes.mjs, bench/bpf-spike.mjs): a
// namespace whose TCP hash has the host's size and holds only the run's own sockets. The parent sets
// net.ipv4.tcp_child_ehash_entries to the host's tcp_ehash_entries only while it creates the
// namespace (the value is read at creation) and puts it back at once; it deletes the namespace at the
// end, on a signal and on a crash, so nothing is left behind. Also: per-namespace sysctls set and
// put back.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { killAllChildren, spawnTracked } from './children.mjs';

const sysctlPath = (name) => path.join('/proc/sys', ...name.split('.'));
export const readSysctl = (name) => readFileSync(sysctlPath(name), 'utf8').trim();
const writeSysctl = (name, value) => writeFileSync(sysctlPath(name), String(value));

/** Sets sysctls, returning a function that puts every one back (idempotent). */
export function setSysctls(values) {
  const old = [];
  for (const [name, value] of Object.entries(values)) {
    old.push([name, readSysctl(name)]);
    writeSysctl(name, value);
  }
  let restored = false;
  return () => {
    if (restored) return;
    restored = true;
    for (const [name, value] of old.reverse()) writeSysctl(name, value);
  };
}

/** Creates the namespace (own TCP hash of the host’s size) and runs `node script --inside ...argv` inside it; exits with its status. */
export async function runInNamespace(tag, script, argv) {
  const name = `sockwatch-${tag}-${process.pid}`;
  const ehash = readSysctl('net.ipv4.tcp_ehash_entries');
  const restore = setSysctls({ 'net.ipv4.tcp_child_ehash_entries': ehash });
  try {
    execFileSync('ip', ['netns', 'add', name]);
  } finally {
    restore();
  }
  let deleted = false;
  const remove = () => {
    if (deleted) return;
    deleted = true;
    killAllChildren('SIGKILL');
    try {
      execFileSync('ip', ['netns', 'del', name]);
    } catch {
      // already gone
    }
  };
  process.on('exit', remove);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'])
    process.on(sig, () => {
      remove();
      process.exit(130);
    });
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  process.stdout.write(`namespace ${name}: own TCP hash of ${ehash} buckets (tcp_child_ehash_entries put back to its value)\n`);
  const child = spawnTracked('ip', ['netns', 'exec', name, process.execPath, script, '--inside', ...argv], {
    stdio: ['pipe', 'inherit', 'inherit'],
  });
  const code = await new Promise((resolve) => child.once('exit', (c, s) => resolve(c ?? (s ? 1 : 0))));
  remove();
  process.exit(code);
}
