// deploy/systemd/sockwatch-exporter.service, checked as far as this machine allows.
// - `systemd-analyze verify` on a copy whose ExecStart points at the built program (it checks that the
//   path exists and is executable): the single executable dist-standalone/sockwatch-linux-x64 when it
//   has been built (.ci/run builds it before the suite), else Node with the compiled CLI. Any warning
//   (an unknown key, a value systemd cannot parse) fails the test, not only a non-zero exit.
// - `systemd-analyze security --offline=yes`: the unit's exposure score stays "OK" or better.
// - The sandbox, emulated: systemd is not PID 1 on this machine (nor in CI's), so neither systemctl nor
//   systemd-run can start the unit. The test reproduces what matters for least privilege instead: a
//   non-root uid (as DynamicUser= allocates), exactly the unit's AmbientCapabilities= as ambient and
//   bounding set, no_new_privs, with setpriv(1); runs `sockwatch list --all-netns` under strace(1) and
//   checks that it finds a listener in a network namespace held by ANOTHER user's process, and that it
//   does not with either capability removed (so both are needed). strace's record of the run is
//   checked against the unit's SystemCallFilter= (resolved by `systemd-analyze syscall-filter`),
//   RestrictAddressFamilies= and RestrictNamespaces=. Not emulated: the mount options
//   (ProtectSystem=, PrivateTmp=, ...), MemoryMax= and the seccomp filter's enforcement itself.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onCleanup, runCleanups } from './helpers/cleanup';
import { canNetns, cleanupNetns, inNewNetns, listenerScript, netnsInode, type Holder } from './helpers/netns';
import { tmpDir } from './helpers/tmp';
import { waitFor } from './helpers/wait';

const root = path.join(__dirname, '..');
const unitFile = path.join(root, 'deploy', 'systemd', 'sockwatch-exporter.service');
const standalone = path.join(root, 'dist-standalone', 'sockwatch-linux-x64');
const cli = path.join(root, 'dist', 'cli', 'main.js');

afterAll(async () => {
  await cleanupNetns();
  await runCleanups();
});

function which(tool: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** The unit's [Service] settings: every value of each key, in order. */
function serviceSettings(text: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1]!;
      continue;
    }
    const eq = line.indexOf('=');
    if (section !== 'Service' || eq < 0) continue;
    const key = line.slice(0, eq);
    settings.set(key, [...(settings.get(key) ?? []), line.slice(eq + 1)]);
  }
  return settings;
}
const unitText = fs.readFileSync(unitFile, 'utf8');
const service = serviceSettings(unitText);
const one = (key: string): string => {
  const v = service.get(key);
  expect(v, key).toHaveLength(1);
  return v![0]!;
};
const words = (key: string): string[] => one(key).split(/\s+/);

/**
 * The arguments ExecStart= gives sockwatch, $VARIABLES expanded from Environment= as systemd does
 * (unquoted: split into words), the --listen address replaced by `listen`.
 */
function execStartArgs(listen: string): string[] {
  const env = new Map<string, string>();
  for (const value of service.get('Environment') ?? []) {
    const m = /^"?([A-Za-z_][A-Za-z0-9_]*)=(.*?)"?$/.exec(value);
    if (m) env.set(m[1]!, m[2]!);
  }
  const args = one('ExecStart')
    .split(/\s+/)
    .slice(1)
    .flatMap((w) => (w.startsWith('$') ? (env.get(w.slice(1)) ?? '').split(/\s+/).filter(Boolean) : [w]));
  const i = args.indexOf('--listen');
  expect(i, 'ExecStart (with its Environment=) names --listen').toBeGreaterThan(0);
  args[i + 1] = listen;
  return args;
}

/** A copy of the unit in a directory with a space in its name, ExecStart pointing at the built program. */
function unitCopy(edit: (text: string) => string = (t) => t): string {
  const program = fs.existsSync(standalone) ? `"${standalone}"` : `"${process.execPath}" "${cli}"`;
  const text = unitText.replace(/^ExecStart=\/usr\/local\/bin\/sockwatch /m, `ExecStart=${program} `);
  expect(text, 'ExecStart names /usr/local/bin/sockwatch').not.toBe(unitText);
  const file = path.join(tmpDir('unit'), 'with space', 'sockwatch-exporter.service');
  fs.mkdirSync(path.dirname(file));
  fs.writeFileSync(file, edit(text));
  return file;
}

const analyze = which('systemd-analyze');
describe.skipIf(!analyze)(
  `systemd unit (deploy/systemd/sockwatch-exporter.service)${analyze ? '' : ' (skipped: systemd-analyze is not installed)'}`,
  () => {
    it('passes systemd-analyze verify with ExecStart at the built program, with no warning', () => {
      const r = spawnSync(analyze!, ['verify', unitCopy()], { encoding: 'utf8' });
      expect(`${r.stdout}${r.stderr}`).toBe('');
      expect(r.status).toBe(0);
    });

    it('systemd-analyze verify catches what the check relies on: a missing program, a misspelled key, a bad value', () => {
      const missing = spawnSync(
        analyze!,
        ['verify', unitCopy((t) => t.replace(/^ExecStart="[^"]+"/m, 'ExecStart=/nonexistent/sockwatch'))],
        {
          encoding: 'utf8',
        },
      );
      expect(missing.stderr).toMatch(/\/nonexistent\/sockwatch is not executable/);
      expect(missing.status).not.toBe(0);
      const misspelled = spawnSync(analyze!, ['verify', unitCopy((t) => t.replace('AmbientCapabilities=', 'AmbientCapabilites='))], {
        encoding: 'utf8',
      });
      expect(misspelled.stderr).toMatch(/Unknown key 'AmbientCapabilites'/);
      const badFamily = spawnSync(analyze!, ['verify', unitCopy((t) => t.replace('AF_NETLINK', 'AF_NETLNK'))], { encoding: 'utf8' });
      expect(badFamily.stderr).toMatch(/AF_NETLNK/);
    });

    it('runs the exporter on every namespace as a dynamic user with only CAP_SYS_ADMIN and CAP_SYS_PTRACE', () => {
      expect(one('ExecStart')).toMatch(/^\/usr\/local\/bin\/sockwatch exporter --all-netns /);
      // Loopback unless the operator says otherwise (/etc/default/sockwatch-exporter).
      expect(execStartArgs('kept')).toEqual(['exporter', '--all-netns', '--listen', 'kept']);
      expect(one('Environment')).toBe('"SOCKWATCH_EXPORTER_ARGS=--listen 127.0.0.1:9630"');
      expect(one('DynamicUser')).toBe('yes');
      expect(service.has('User')).toBe(false);
      expect(words('AmbientCapabilities').sort()).toEqual(['CAP_SYS_ADMIN', 'CAP_SYS_PTRACE']);
      expect(words('CapabilityBoundingSet').sort()).toEqual(words('AmbientCapabilities').sort());
      expect(one('NoNewPrivileges')).toBe('yes');
      expect(one('ProtectSystem')).toBe('strict');
      expect(one('ProtectHome')).toBe('yes');
      expect(one('PrivateTmp')).toBe('yes');
      expect(one('RestrictNamespaces')).toBe('net');
      expect(words('RestrictAddressFamilies').sort()).toEqual(['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX']);
      expect(one('MemoryMax')).toMatch(/^\d+[KMG]$/);
      // V8 compiles code at run time: writable-executable memory must stay allowed.
      expect(service.has('MemoryDenyWriteExecute')).toBe(false);
      // The processes whose namespaces are scanned must stay visible.
      expect(service.get('ProtectProc') ?? ['default']).toEqual(['default']);
      expect(service.has('ProcSubset')).toBe(false);
      // The DaemonSet asks for the same two capabilities.
      const ds = fs.readFileSync(path.join(root, 'deploy', 'kubernetes', 'exporter-daemonset.yaml'), 'utf8');
      const added = /add:\n((?:\s+- \S+\n)+)/.exec(ds)?.[1]?.match(/[A-Z_]+/g);
      expect(added?.map((c) => `CAP_${c}`).sort()).toEqual(words('AmbientCapabilities').sort());
    });

    it('has an exposure level of OK or better (systemd-analyze security --offline)', () => {
      const r = spawnSync(analyze!, ['security', '--offline=yes', '--no-pager', unitCopy()], { encoding: 'utf8' });
      const m = /Overall exposure level for sockwatch-exporter\.service: (\d+(?:\.\d+)?) (\S+)/.exec(r.stdout);
      expect(m, r.stdout + r.stderr).not.toBeNull();
      expect(Number(m![1])).toBeLessThanOrEqual(3.9);
      expect(['OK', 'SAFE']).toContain(m![2]);
    });
  },
);

// The sandbox, emulated (see the top of the file).
const tools = { setpriv: which('setpriv'), strace: which('strace'), python3: which('python3') };
const emulationSkip = !canNetns
  ? 'needs root, ip and unshare'
  : !analyze
    ? 'systemd-analyze is not installed'
    : Object.entries(tools).find(([, p]) => !p)?.[0]
      ? `${Object.entries(tools).find(([, p]) => !p)![0]} is not installed`
      : null;
/** In systemd's dynamic user range (61184-65519); the namespace's holder is yet another user. */
const DYNAMIC_UID = 61999;
const OTHER_UID = 61998;

/** Syscall groups as systemd resolves them: name -> syscalls (nested groups expanded). */
function syscallGroups(): Map<string, Set<string>> {
  const raw = new Map<string, string[]>();
  let current: string[] | null = null;
  for (const line of spawnSync(analyze!, ['syscall-filter', '--no-pager'], { encoding: 'utf8' }).stdout.split('\n')) {
    if (/^@\S+$/.test(line)) raw.set(line, (current = []));
    else if (/^\S/.test(line)) current = null;
    else if (current && /^\s+@?[a-z0-9_-]+$/.test(line)) current.push(line.trim());
  }
  const resolved = new Map<string, Set<string>>();
  const resolve = (name: string): Set<string> => {
    const done = resolved.get(name);
    if (done) return done;
    const set = new Set<string>();
    resolved.set(name, set);
    for (const entry of raw.get(name) ?? []) for (const s of entry.startsWith('@') ? resolve(entry) : [entry]) set.add(s);
    return set;
  };
  for (const name of raw.keys()) resolve(name);
  return resolved;
}

/** What the unit's SystemCallFilter= lines allow: the first allow-list minus every ~deny list. */
function allowedSyscalls(groups: Map<string, Set<string>>): Set<string> {
  const expand = (items: string[]) => items.flatMap((i) => (i.startsWith('@') ? [...(groups.get(i) ?? [])] : [i]));
  const allowed = new Set<string>();
  for (const value of service.get('SystemCallFilter') ?? []) {
    if (value.startsWith('~')) for (const s of expand(value.slice(1).trim().split(/\s+/))) allowed.delete(s);
    else for (const s of expand(value.split(/\s+/))) allowed.add(s);
  }
  return allowed;
}

interface TracedRun {
  status: number | null;
  stdout: string;
  stderr: string;
  /** strace -f lines of the program and its threads. */
  trace: string[];
}

/** setpriv + strace + node + the CLI: `sockwatch ARGS` as DYNAMIC_UID with exactly `caps` (ambient,
 * inheritable, bounding) and no_new_privs, traced with strace -f into a file in a directory of its own. */
function sandboxed(caps: string[], args: string[]): { argv: string[]; dir: string; traceFile: string } {
  const parent = tmpDir('sandbox');
  fs.chmodSync(parent, 0o711); // mkdtemp's 0700 would keep the other uid out
  const dir = path.join(parent, 'with space');
  fs.mkdirSync(dir);
  fs.chownSync(dir, DYNAMIC_UID, DYNAMIC_UID);
  const traceFile = path.join(dir, 'trace');
  const capList = caps.map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`).join(',');
  const capArgs = caps.length
    ? [`--inh-caps=${capList}`, `--ambient-caps=${capList}`, `--bounding-set=-all,${capList}`]
    : ['--inh-caps=-all', '--bounding-set=-all'];
  const argv = [
    tools.setpriv!,
    `--reuid=${DYNAMIC_UID}`,
    `--regid=${DYNAMIC_UID}`,
    '--clear-groups',
    '--no-new-privs',
    ...capArgs,
    tools.strace!,
    '-f',
    '-qq',
    '-o',
    traceFile,
    process.execPath,
    cli,
    ...args,
  ];
  return { argv, dir, traceFile };
}
const sandboxEnv = (dir: string) => ({ PATH: process.env.PATH, TMPDIR: dir, HOME: dir });

function readTrace(traceFile: string, stderr: string): string[] {
  expect(fs.existsSync(traceFile), `strace wrote no record: ${stderr}`).toBe(true);
  return fs.readFileSync(traceFile, 'utf8').split('\n');
}

/** A command that ends by itself (list), sandboxed. */
function runSandboxed(caps: string[], args: string[]): TracedRun {
  const { argv, dir, traceFile } = sandboxed(caps, args);
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 60_000, cwd: dir, env: sandboxEnv(dir) });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, trace: readTrace(traceFile, r.stderr) };
}

/** The exporter as the unit runs it, sandboxed: one scrape, then SIGTERM to it (strace then ends too). */
async function scrapeSandboxedExporter(caps: string[]): Promise<TracedRun> {
  const { argv, dir, traceFile } = sandboxed(caps, execStartArgs('127.0.0.1:0'));
  const child = spawn(argv[0]!, argv.slice(1), { cwd: dir, env: sandboxEnv(dir), stdio: ['ignore', 'pipe', 'pipe'] });
  onCleanup(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const at = /http:\/\/127\.0\.0\.1:\d+\/metrics/;
  await waitFor('the sandboxed exporter to listen', () => at.test(stderr), {
    giveUpIf: () => child.exitCode !== null,
    detail: () => stderr,
  });
  const scrape = await (await fetch(at.exec(stderr)![0])).text();
  // strace's child is the exporter (setpriv exec'ed strace): end it as systemd would, with SIGTERM.
  const exporterPid = Number(fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
  process.kill(exporterPid, 'SIGTERM');
  const status = await exited;
  return { status, stdout: scrape, stderr, trace: readTrace(traceFile, stderr) };
}

describe.skipIf(emulationSkip !== null)(
  `systemd unit's least privilege, emulated with setpriv and strace${emulationSkip ? ` (skipped: ${emulationSkip})` : ''}`,
  () => {
    let holder: Holder;
    let port: number;
    let inode: number;
    const caps = emulationSkip ? [] : words('AmbientCapabilities');
    const listArgs = () => ['list', '--all-netns', '-t', '--state', 'listen', '--sport', String(port), '--format', 'json'];
    // In that namespace only: every namespace has its own 127.0.0.1, and another test's listener on the
    // same port (in the host's namespace, which is listed even without the capabilities) is not this one.
    const findsListener = (run: TracedRun) =>
      run.stdout
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { netns?: number; local?: string; state?: string })
        .some((r) => r.netns === inode && r.local === `127.0.0.1:${port}` && r.state === 'listen');

    beforeAll(async () => {
      // A listener in a new network namespace, held by a process of another (non-root) user.
      holder = await inNewNetns(listenerScript(`os.setgroups([]); os.setgid(${OTHER_UID}); os.setuid(${OTHER_UID})`));
      port = Number(holder.firstLine);
      inode = netnsInode(`/proc/${holder.pid}/ns/net`);
      expect(fs.statSync(`/proc/${holder.pid}`).uid).toBe(OTHER_UID);
    });

    it("with the unit's capabilities, list --all-netns finds the listener in another user's namespace", () => {
      const run = runSandboxed(caps, listArgs());
      expect(findsListener(run), `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`).toBe(true);
      expect(run.stdout).toContain(String(inode));
    });

    it('without CAP_SYS_PTRACE (even with CAP_DAC_READ_SEARCH) or without CAP_SYS_ADMIN it does not: both are needed', () => {
      const variants: Array<[string, string[]]> = [
        ['without CAP_SYS_PTRACE', caps.filter((c) => c !== 'CAP_SYS_PTRACE')],
        ['CAP_DAC_READ_SEARCH instead of CAP_SYS_PTRACE', [...caps.filter((c) => c !== 'CAP_SYS_PTRACE'), 'CAP_DAC_READ_SEARCH']],
        ['without CAP_SYS_ADMIN', caps.filter((c) => c !== 'CAP_SYS_ADMIN')],
      ];
      for (const [what, set] of variants) {
        const run = runSandboxed(set, listArgs());
        expect(run.stderr, 'the command itself is accepted').not.toMatch(/Unknown option|usage/i);
        expect(findsListener(run), `${what}:\n${run.stdout}\n${run.stderr}`).toBe(false);
      }
    });

    it("the exporter, as the unit runs it, scrapes that namespace within the unit's SystemCallFilter=, RestrictAddressFamilies= and RestrictNamespaces=", async () => {
      const run = await scrapeSandboxedExporter(caps);
      expect(run.stdout).toMatch(new RegExp(`^sockwatch_netns_up\\{netns="${inode}"\\} 1$`, 'm'));
      expect(run.stdout).toMatch(
        new RegExp(`^sockwatch_listen_accept_queue\\{netns="${inode}",local="127\\.0\\.0\\.1:${port}"\\} 0$`, 'm'),
      );
      expect(run.status, `the exporter stops cleanly on SIGTERM: ${run.stderr}`).toBe(0);
      const allowed = allowedSyscalls(syscallGroups());
      expect(allowed.has('setns'), 'setns is allowed').toBe(true);
      const used = new Set<string>();
      const families = new Set<string>();
      const nsTypes = new Set<string>();
      for (const line of run.trace) {
        const m = /^\d+\s+([a-z0-9_]+)\((.*)/.exec(line);
        if (!m) continue;
        used.add(m[1]!);
        if (m[1] === 'socket') families.add(/^(AF_[A-Z0-9]+)/.exec(m[2]!)?.[1] ?? m[2]!);
        // A thread's call cut by another's is printed "setns(93, CLONE_NEWNET <unfinished ...>".
        if (m[1] === 'setns') nsTypes.add(/^\d+, ([A-Z_0-9|]+)/.exec(m[2]!)?.[1] ?? m[2]!);
        if (m[1] === 'unshare' || ((m[1] === 'clone' || m[1] === 'clone3') && /CLONE_NEW/.test(m[2]!))) nsTypes.add(`${m[1]} ${m[2]}`);
      }
      expect(used.size, 'strace recorded the run').toBeGreaterThan(20);
      expect([...used].filter((s) => !allowed.has(s)).sort(), 'syscalls outside SystemCallFilter=').toEqual([]);
      const allowedFamilies = words('RestrictAddressFamilies');
      expect([...families].filter((f) => !allowedFamilies.includes(f)).sort(), 'families outside RestrictAddressFamilies=').toEqual([]);
      expect(families).toContain('AF_NETLINK');
      expect([...nsTypes], 'namespace types entered').toEqual(['CLONE_NEWNET']);
    });
  },
);
