// The single executable (`npm run build:standalone`: dist-standalone/sockwatch-linux-x64, a pinned
// Node 26 with the bundled CLI and the addon inside) where its users run it: a copy of the file alone,
// started in a private mount namespace where no Node can be found (node and nodejs whited out of
// their directories with an overlay, the repo's cached Node builds covered), from a directory with
// no node_modules, with TMPDIR on a tmpfs mounted noexec. Everything it talks to is real: kernel
// sockets, an HTTP receiver on loopback, the .NET fixture app and Azurite.
// The build is skipped by the script itself when its inputs have not changed (a few seconds otherwise,
// plus a one-time `npm pack` of the pinned Node).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createContainerSas, keyContainerClient, startAzurite, type Azurite } from './helpers/azurite';
import { runCleanups } from './helpers/cleanup';
import { killCliProcesses, startCli, type CliProcess, type CliResult } from './helpers/cli';
import { dotnetSkipReason, hasDotnet, startDotnetApp, type DotnetApp } from './helpers/dotnet';
import { receiver } from './helpers/http-receiver';
import { SNAT_ENV, deadPid } from './helpers/snat';
import { acceptingServer, cleanupSockets, unreadConnection } from './helpers/sockets';
import { tmpDir } from './helpers/tmp';

const ROOT = path.resolve(__dirname, '..');
const BUILT = path.join(ROOT, 'dist-standalone', 'sockwatch-linux-x64');
const PREBUILD = path.join(ROOT, 'prebuilds', 'linux-x64', 'sockwatch.glibc.node');
const UID = process.getuid!();
// unshare --mount, mount and mknod need root (as every namespace test here)
const notRoot = UID !== 0;
if (notRoot) console.warn('standalone.test.ts: not root, so no mount namespace to hide Node in');
const noDotnet = !hasDotnet();
if (noDotnet) console.warn(`standalone.test.ts (snat): ${dotnetSkipReason()}`);

/**
 * sh -c SCRIPT sh EXE NOEXEC SCRATCH <node> <dist/cli/main.js> ARGS...: startCli appends the test
 * runner's node and CLI path, which are not run. Inside the new mount namespace: a tmpfs on SCRATCH
 * holds overlay whiteouts (character devices 0/0) for every node binary named in SW_HIDE ("f:PATH"
 * lines; directories "d:PATH" get an empty read-only tmpfs), NOEXEC (if not empty) gets a noexec
 * tmpfs, and the wrapper refuses (exit 97) to start EXE while any node is still found.
 */
const HIDE_NODE = `
fail() { echo "standalone test wrapper: $*" >&2; exit 97; }
exe="$1"; noexec="$2"; scratch="$3"; shift 5
mount -t tmpfs tmpfs "$scratch" || fail "cannot mount a tmpfs on $scratch"
n=0
while IFS= read -r line; do
  p="\${line#?:}"
  case "$line" in
    d:*) mount -t tmpfs -o ro,mode=755 tmpfs "$p" || fail "cannot cover $p" ;;
    f:*)
      dir="$(dirname "$p")"
      wo="$(grep -lxF "$dir" "$scratch"/*.path 2>/dev/null | head -n 1)"
      if [ -z "$wo" ]; then n=$((n + 1)); wo="$scratch/$n.path"; printf '%s\\n' "$dir" >"$wo"; mkdir "$scratch/$n"; fi
      mknod "\${wo%.path}/$(basename "$p")" c 0 0 || fail "cannot make a whiteout for $p" ;;
  esac
done <<EOF
$SW_HIDE
EOF
for wo in "$scratch"/*.path; do
  [ -e "$wo" ] || continue
  dir="$(cat "$wo")"
  mount -t overlay overlay -o "lowerdir=\${wo%.path}:$dir" "$dir" || fail "cannot hide node in $dir"
done
if [ -n "$noexec" ]; then mount -t tmpfs -o noexec,mode=1777 tmpfs "$noexec" || fail "cannot mount a noexec tmpfs on $noexec"; fi
found="$(command -v node nodejs)" && fail "node still reachable: $found"
printf '%s\\n' "$SW_HIDE" | while IFS= read -r line; do
  case "$line" in f:*) [ ! -e "\${line#f:}" ] || exit 1 ;; esac
done || fail "a hidden node binary is still there"
unset SW_HIDE
exec "$exe" "$@"
`;

/** Every node this machine could run: node/nodejs on PATH, the test runner's own, the repo's cached builds. */
function nodeHideList(): string {
  const files = new Set<string>();
  const add = (file: string) => {
    try {
      fs.lstatSync(file);
    } catch {
      return;
    }
    files.add(path.join(fs.realpathSync(path.dirname(file)), path.basename(file)));
    files.add(fs.realpathSync(file));
  };
  for (const dir of (process.env.PATH ?? '').split(':').filter(Boolean)) for (const name of ['node', 'nodejs']) add(path.join(dir, name));
  for (const file of ['/usr/bin/node', '/usr/local/bin/node', '/usr/bin/nodejs', '/opt/node/bin/node', process.execPath]) add(file);
  // the pinned Node 26 of the build (.cache/standalone) and any Node lines CI keeps in the repo
  const dirs = [path.join(ROOT, '.cache'), path.join(ROOT, '.ci', 'node')].filter((d) => fs.existsSync(d)).map((d) => fs.realpathSync(d));
  // a node inside a covered directory (the suite run by one of those Node builds) goes with it
  const outside = [...files].filter((f) => !dirs.some((d) => f.startsWith(d + path.sep)));
  return [...outside.map((f) => `f:${f}`), ...dirs.map((d) => `d:${d}`)].join('\n');
}

let base: string;
let exe: string; // a copy of the built file, alone in its directory
let work: string; // the current directory of every run: no node_modules here or above
let noexec: string; // TMPDIR of the runs, mounted noexec inside the namespace
let scratch: string;
let home: string;
const ENV_UNSET = ['XDG_RUNTIME_DIR', 'XDG_CACHE_HOME', 'SOCKWATCH_TMPDIR', 'SOCKWATCH_NATIVE', 'NODE_OPTIONS', ...SNAT_ENV];

interface RunOptions {
  env?: NodeJS.ProcessEnv;
  /** What SW_HIDE lists (default: nodeHideList()). */
  hide?: string;
  /** TMPDIR mounted noexec (default true). */
  noexecTmp?: boolean;
}

/** The copied executable in the no-Node namespace: `sockwatch SUBCOMMAND ARGS`. */
function start(subcommand: string | undefined, args: string[], opts: RunOptions = {}): CliProcess {
  const noexecTmp = opts.noexecTmp ?? true;
  return startCli(args, {
    subcommand,
    cwd: work,
    unsetEnv: ENV_UNSET,
    env: { TMPDIR: noexec, HOME: home, SW_HIDE: opts.hide ?? nodeHideList(), ...opts.env },
    wrapper: ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', HIDE_NODE, 'sh', exe, noexecTmp ? noexec : '', scratch],
  });
}

const run = (subcommand: string | undefined, args: string[], opts?: RunOptions): Promise<CliResult> => start(subcommand, args, opts).exited;

/** The fallback directory HOME/.cache/sockwatch: private (0700), and no addon file left in it. */
function expectCacheFallbackClean(): void {
  const dir = path.join(home, '.cache', 'sockwatch');
  const st = fs.lstatSync(dir);
  expect(st.isDirectory()).toBe(true);
  expect(st.mode & 0o777).toBe(0o700);
  expect(fs.readdirSync(dir)).toEqual([]);
}

beforeAll(() => {
  execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'build-standalone.mjs')], {
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  base = tmpDir('standalone');
  for (const d of ['bin', 'work', 'tmp', 'scratch', 'home']) fs.mkdirSync(path.join(base, d));
  exe = path.join(base, 'bin', 'sockwatch');
  fs.copyFileSync(BUILT, exe);
  fs.chmodSync(exe, 0o755);
  work = path.join(base, 'work');
  noexec = path.join(base, 'tmp');
  scratch = path.join(base, 'scratch');
  home = path.join(base, 'home');
  for (let d = work; ; d = path.dirname(d)) {
    expect(fs.existsSync(path.join(d, 'node_modules')), `node_modules in ${d}`).toBe(false);
    if (d === path.dirname(d)) break;
  }
}, 180_000);

afterAll(async () => {
  await killCliProcesses();
  await cleanupSockets();
  await runCleanups();
});

describe.skipIf(notRoot)('the single executable without Node', () => {
  it('the wrapper refuses to start it while a node can still be found (the check can fail)', async () => {
    const r = await run(undefined, ['--version'], { hide: '' });
    expect(r.code).toBe(97);
    expect(r.stderr).toMatch(/^standalone test wrapper: node still reachable: \//);
  });

  it('--version: sockwatch, the embedded addon (its stamp and sha256) and the Node inside', async () => {
    const r = await run(undefined, ['--version']);
    expect(r.code, r.stderr).toBe(0);
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const stamp = JSON.parse(fs.readFileSync(path.join(ROOT, 'prebuilds', 'linux-x64', 'sockwatch.stamp.json'), 'utf8')) as {
      hash: string;
    };
    const sha = createHash('sha256').update(fs.readFileSync(PREBUILD)).digest('hex');
    expect(r.stdout.split('\n')).toEqual([
      `sockwatch ${pkg.version} (single executable ${exe})`,
      `addon embedded prebuilds/linux-x64/sockwatch.glibc.node (sources ${stamp.hash.slice(0, 12)}, sha256 ${sha.slice(0, 12)})`,
      'node v26.12.1 (N-API 10, linux-x64)',
      '',
    ]);
  });

  it('list, with TMPDIR noexec: the addon loads from HOME/.cache/sockwatch and is not left there', async () => {
    fs.rmSync(path.join(home, '.cache'), { recursive: true, force: true });
    const o = await unreadConnection('127.0.0.1', 3000);
    const r = await run('list', ['--tcp', '--sport', String(o.port)]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    // the accepted side holds the 3000 unread bytes
    expect(r.stdout).toMatch(new RegExp(`^tcp +ESTABLISHED +3000 +0 +127\\.0\\.0\\.1:${o.port} +127\\.0\\.0\\.1:${o.clientPort} `, 'm'));
    expectCacheFallbackClean();
    expect(fs.readdirSync(path.dirname(exe))).toEqual(['sockwatch']); // the last fallback was not needed
  });

  it('list, with an ordinary TMPDIR: loaded from TMPDIR/sockwatch-UID (0700), nothing left, no fallback', async () => {
    fs.rmSync(path.join(home, '.cache'), { recursive: true, force: true });
    const tmp = tmpDir('standalone-exec-tmp');
    const r = await run('list', ['--udp'], { env: { TMPDIR: tmp }, noexecTmp: false });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Netid +State/);
    const dir = path.join(tmp, `sockwatch-${UID}`);
    expect(fs.lstatSync(dir).mode & 0o777).toBe(0o700);
    expect(fs.readdirSync(dir)).toEqual([]);
    expect(fs.existsSync(path.join(home, '.cache'))).toBe(false);
  });

  it("a killed run's leftover addon file (its pid gone) is removed by the next run; a live run's is kept", async () => {
    const tmp = tmpDir('standalone-leftover-tmp');
    const dir = path.join(tmp, `sockwatch-${UID}`);
    fs.mkdirSync(dir, { mode: 0o700 });
    const dead = `0123456789abcdef-${deadPid()}-0badc0de.node`;
    const live = `0123456789abcdef-${process.pid}-0badc0de.node`;
    for (const name of [dead, live]) fs.writeFileSync(path.join(dir, name), 'x', { mode: 0o700 });
    const r = await run('list', ['--udp'], { env: { TMPDIR: tmp }, noexecTmp: false });
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readdirSync(dir)).toEqual([live]);
  });

  it.each([
    ['open to others (0777)', (dir: string) => (fs.mkdirSync(dir), fs.chmodSync(dir, 0o777))],
    ["someone else's (uid 65534, 0700)", (dir: string) => (fs.mkdirSync(dir, { mode: 0o700 }), fs.chownSync(dir, 65534, 65534))],
    ['a link to a directory of ours', (dir: string) => fs.symlinkSync(tmpDir('standalone-link-target'), dir)],
  ])('TMPDIR/sockwatch-UID %s is passed over, nothing written into it', async (_what, make) => {
    fs.rmSync(path.join(home, '.cache'), { recursive: true, force: true });
    const tmp = tmpDir('standalone-shared-tmp');
    const dir = path.join(tmp, `sockwatch-${UID}`);
    make(dir);
    const r = await run('list', ['--udp'], { env: { TMPDIR: tmp }, noexecTmp: false });
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readdirSync(dir)).toEqual([]);
    expectCacheFallbackClean(); // used instead
  });

  it('SOCKWATCH_TMPDIR on a noexec file system: exit 1 with one line saying what to set', async () => {
    const r = await run('list', [], { env: { SOCKWATCH_TMPDIR: noexec } });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.split('\n')).toEqual([
      `sockwatch: cannot write the embedded sockwatch addon anywhere it can be loaded (${noexec}: mounted noexec): set SOCKWATCH_TMPDIR to a directory of yours on a file system mounted without noexec`,
      '',
    ]);
  });

  it('queues: an alert delivered to a loopback receiver, SIGTERM ends it with 0', async () => {
    const rx = await receiver();
    const o = await unreadConnection('127.0.0.1', 4000);
    const state = tmpDir('standalone-queues');
    const c = start('queues', [
      '--url',
      `${rx.url}/hook`,
      '--state-dir',
      state,
      '--recv-threshold',
      '1000',
      '--tcp',
      '--sport',
      String(o.port),
      '--src',
      '127.0.0.1', // the port number alone can be another test's socket with a queue on another address
      '--interval',
      '20',
    ]);
    await rx.waitFor((reqs) => reqs.length >= 1, 20_000, 'the RECV alert');
    await c.waitFor('the human line', (l) => l.length >= 1);
    c.child.kill('SIGTERM');
    const r = await c.exited;
    expect(r.code, r.stderr).toBe(0);
    const alert = rx.requests[0]!;
    expect(alert.path).toBe('/hook');
    const q = new Map(alert.query);
    expect(q.get('type')).toBe('RECV');
    expect(q.get('bytes')).toBe('4000');
    expect(q.get('local')).toBe(`127.0.0.1:${o.port}`);
    expectCacheFallbackClean();
  });
});

describe.skipIf(notRoot || noDotnet)('the single executable without Node: snat with a real .NET app and Azurite', () => {
  let azurite: Azurite;
  let app: DotnetApp | undefined;

  beforeAll(async () => {
    azurite = await startAzurite();
  });

  afterAll(async () => {
    await killCliProcesses();
    await app?.stop();
    await azurite?.stop();
  });

  it('takes a dump of the app over the threshold and uploads it', async () => {
    const { port } = await acceptingServer('127.0.0.1');
    const instance = `standalone-${process.pid}`;
    const container = 'standalone';
    const sas = await createContainerSas(azurite.url, container);
    app = await startDotnetApp('127.0.0.1', port, 12);
    const logDir = tmpDir('standalone-snat');
    const r = await run(
      'snat',
      ['-t', '10', '-f', '0.5', '--pid', String(app.pid), '--exclude-ports', `80,443,2222,${port}`, '--log-dir', logDir, 'enable-dump'],
      { env: { COMPUTERNAME: instance, DIAGNOSTICS_AZUREBLOBCONTAINERSASURL: sas } },
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const blobs: { name: string; size: number; metadata: Record<string, string> }[] = [];
    for await (const b of keyContainerClient(azurite.url, container).listBlobsFlat({ includeMetadata: true })) {
      blobs.push({ name: b.name, size: b.properties.contentLength!, metadata: b.metadata ?? {} });
    }
    const dump = blobs.find((b) => new RegExp(`^dump_${instance}_\\d{8}_\\d{6}\\.dmp$`).test(b.name));
    expect(dump, JSON.stringify(blobs)).toBeDefined();
    expect(dump!.metadata).toMatchObject({ instance, kind: 'dump', pid: String(app.pid), remote: `127.0.0.1:${port}`, connections: '12' });
    const head = await keyContainerClient(azurite.url, container).getBlobClient(dump!.name).downloadToBuffer(0, 20);
    expect(head.subarray(0, 4)).toEqual(Buffer.from([0x7f, 0x45, 0x4c, 0x46])); // ELF
    expect(head.readUInt16LE(16)).toBe(4); // ET_CORE
    expectCacheFallbackClean();
  });
});
