// The real .NET fixture app (test/fixtures/dotnet-app) for tests: detect dotnet, build once, start/stop.
//
// Builds are cached in test/fixtures/dotnet-app/bin/cache-<hash>/, keyed by a hash of the fixture
// sources and the SDK version, so test files after the first do not rebuild. Two test files building
// at once are safe: a lock file (holding the builder's pid) makes the second wait, and the build
// itself happens in a private directory that is renamed into place only when complete.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

export const DOTNET_APP_DIR = path.resolve(__dirname, '../fixtures/dotnet-app');
const SOURCES = ['dotnet-app.csproj', 'Program.cs', 'nuget.config'];
/** The fixture's TargetFramework is net10.0: it needs a 10.x runtime. */
const RUNTIME_MAJOR = '10';

const DOTNET_ENV: NodeJS.ProcessEnv = {
  ...process.env,
  DOTNET_CLI_TELEMETRY_OPTOUT: '1',
  DOTNET_NOLOGO: '1',
  DOTNET_SKIP_FIRST_TIME_EXPERIENCE: '1',
  DOTNET_CLI_USE_MSBUILD_SERVER: '0',
  // the SDK's own .NET processes (MSBuild) need no diagnostics socket, and would leave stale ones
  DOTNET_EnableDiagnostics: '0',
};

let dotnetCheck: { ok: boolean; reason: string; sdkVersion: string } | undefined;

function checkDotnet(): { ok: boolean; reason: string; sdkVersion: string } {
  if (dotnetCheck) return dotnetCheck;
  const runtimes = spawnSync('dotnet', ['--list-runtimes'], { encoding: 'utf8', env: DOTNET_ENV, timeout: 30_000 });
  const version = spawnSync('dotnet', ['--version'], { encoding: 'utf8', env: DOTNET_ENV, timeout: 30_000 });
  if (runtimes.error || runtimes.status !== 0 || version.status !== 0) {
    dotnetCheck = { ok: false, reason: 'the dotnet CLI is not installed (or not on PATH)', sdkVersion: '' };
  } else if (!new RegExp(`^Microsoft\\.NETCore\\.App ${RUNTIME_MAJOR}\\.`, 'm').test(runtimes.stdout)) {
    dotnetCheck = { ok: false, reason: `no Microsoft.NETCore.App ${RUNTIME_MAJOR}.x runtime is installed`, sdkVersion: '' };
  } else {
    dotnetCheck = { ok: true, reason: '', sdkVersion: version.stdout.trim() };
  }
  return dotnetCheck;
}

/** True when a dotnet SDK with a runtime matching the fixture is installed. */
export function hasDotnet(): boolean {
  return checkDotnet().ok;
}

/** Why hasDotnet() is false ('' when it is true); tests print it when they skip. */
export function dotnetSkipReason(): string {
  const { ok, reason } = checkDotnet();
  return ok ? '' : `skipped: ${reason}; these tests need the .NET ${RUNTIME_MAJOR} SDK`;
}

function sourceHash(): string {
  const h = createHash('sha256');
  h.update(checkDotnet().sdkVersion);
  for (const name of SOURCES) {
    h.update(name);
    h.update(fs.readFileSync(path.join(DOTNET_APP_DIR, name)));
  }
  return h.digest('hex').slice(0, 16);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function runBuild(cacheDir: string): Promise<void> {
  const work = path.join(DOTNET_APP_DIR, 'bin', `build-${process.pid}-${randomBytes(4).toString('hex')}`);
  const src = path.join(work, 'src');
  const out = path.join(work, 'out');
  await fsp.mkdir(src, { recursive: true });
  try {
    for (const name of SOURCES) await fsp.copyFile(path.join(DOTNET_APP_DIR, name), path.join(src, name));
    const args = [
      'build',
      path.join(src, 'dotnet-app.csproj'),
      '-c',
      'Release',
      '-o',
      out,
      '--nologo',
      '--disable-build-servers',
      '-nodeReuse:false',
    ];
    const result = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
      const child = spawn('dotnet', args, { cwd: src, env: DOTNET_ENV, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      child.once('error', reject);
      child.once('close', (code) => resolve({ code, output }));
    });
    if (result.code !== 0) throw new Error(`dotnet build of the fixture failed (exit ${result.code}):\n${result.output.slice(-4000)}`);
    await fsp.writeFile(path.join(out, '.complete'), new Date().toISOString());
    try {
      await fsp.rename(out, cacheDir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err; // someone else finished first: theirs is as good
    }
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}

let building: Promise<string> | undefined;

/** Builds the fixture (once per source hash) and returns the directory holding dotnet-app and dotnet-app.dll. */
export function buildDotnetApp(): Promise<string> {
  building ??= (async () => {
    if (!hasDotnet()) throw new Error(dotnetSkipReason());
    const hash = sourceHash();
    const binDir = path.join(DOTNET_APP_DIR, 'bin');
    const cacheDir = path.join(binDir, `cache-${hash}`);
    const lockFile = path.join(binDir, `cache-${hash}.lock`);
    await fsp.mkdir(binDir, { recursive: true });
    const deadline = Date.now() + 170_000;
    for (;;) {
      if (fs.existsSync(path.join(cacheDir, '.complete'))) return cacheDir;
      let lock: fsp.FileHandle | undefined;
      try {
        lock = await fsp.open(lockFile, 'wx');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      if (lock) {
        try {
          await lock.writeFile(String(process.pid));
          await lock.close();
          if (!fs.existsSync(path.join(cacheDir, '.complete'))) await runBuild(cacheDir);
          return cacheDir;
        } finally {
          await fsp.rm(lockFile, { force: true });
        }
      }
      // Another process builds: wait for it, or take over when it died.
      const owner = Number((await fsp.readFile(lockFile, 'utf8').catch(() => '')) || 0);
      if (owner > 0 && !pidAlive(owner)) await fsp.rm(lockFile, { force: true });
      if (Date.now() > deadline) throw new Error(`timed out waiting for another process to build the fixture (lock ${lockFile})`);
      await sleep(250);
    }
  })();
  building.catch(() => (building = undefined));
  return building;
}

export interface DotnetApp {
  /** Host pid of the .NET process. */
  pid: number;
  /** The pid the app printed (differs from pid inside a pid namespace). */
  reportedPid: number;
  child: ChildProcess;
  /** stdout + stderr so far. */
  output(): string;
  /** SIGTERM, then SIGKILL after 5 s; resolves when the process is gone. Idempotent. */
  stop(): Promise<void>;
}

export interface StartDotnetAppOptions {
  /** Also send an HTTP GET to http://host:port/ every 200 ms (System.Net events for traces). */
  http?: boolean;
  /** Extra environment variables for the app. */
  env?: NodeJS.ProcessEnv;
  /** A command prefix the app is run under, e.g. ['unshare', '--pid', '--fork', ...]. */
  wrapper?: string[];
  /** Inside the wrapper (which must give a private mount namespace), mount a fresh tmpfs over /tmp,
   *  keeping the app's own directory visible when it lies under /tmp (a checkout under /tmp). */
  privateTmp?: boolean;
  /** How long to wait for READY (default 60 s). */
  readyTimeoutMs?: number;
}

/** The runtime leaves its diagnostics socket and debugger pipes behind when it exits: remove our app's. */
async function removeStaleSockets(pid: number, tmpDir: string): Promise<void> {
  const names = await fsp.readdir(tmpDir).catch(() => [] as string[]);
  for (const name of names) {
    if (name.startsWith(`dotnet-diagnostic-${pid}-`) || name.startsWith(`clr-debug-pipe-${pid}-`)) {
      await fsp.rm(path.join(tmpDir, name), { force: true });
    }
  }
}

/**
 * The privateTmp wrapper script (sh -c SCRIPT sh APPDIR COMMAND...): a tmpfs over /tmp hides everything
 * below it, the app's directory too when the checkout lives under /tmp, so that directory is opened
 * first and bind-mounted back at the same path. Says why when the app cannot be made visible.
 */
const PRIVATE_TMP = [
  'dir="$1"; shift',
  'exec 3<"$dir" || { echo "sockwatch test: cannot open the app directory $dir" >&2; exit 126; }',
  'mount -t tmpfs tmpfs /tmp || { echo "sockwatch test: cannot mount a tmpfs over /tmp" >&2; exit 126; }',
  'case "$dir" in /tmp/*) mkdir -p "$dir" && mount --no-canonicalize --bind /proc/self/fd/3 "$dir" ||',
  '  { echo "sockwatch test: the tmpfs over /tmp hides $dir and it cannot be bind-mounted back" >&2; exit 126; } ;; esac',
  'exec 3<&-',
  '[ -x "$1" ] || { echo "sockwatch test: $1 is not visible after mounting a tmpfs over /tmp" >&2; exit 127; }',
  'exec "$@"',
].join('\n');

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      const text = fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (text) out.push(...text.split(/\s+/).map(Number));
    }
  } catch {
    // gone
  }
  return out;
}

/** The first process named dotnet-app at or below `pid` (a wrapper may sit in between). */
function findAppPid(pid: number): number | undefined {
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift()!;
    let comm = '';
    try {
      comm = fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim();
    } catch {
      continue;
    }
    if (comm === 'dotnet-app') return p;
    queue.push(...childrenOf(p));
  }
  return undefined;
}

/**
 * Starts the fixture: it opens `count` TCP connections to host:port, keeps them open, and prints
 * "READY <pid>". Resolves once READY is printed.
 */
export async function startDotnetApp(host: string, port: number, count: number, opts: StartDotnetAppOptions = {}): Promise<DotnetApp> {
  const dir = await buildDotnetApp();
  const appArgs = [host, String(port), String(count), ...(opts.http ? ['--http'] : [])];
  const apphost = path.join(dir, 'dotnet-app');
  const command = [...(opts.wrapper ?? []), ...(opts.privateTmp ? ['sh', '-c', PRIVATE_TMP, 'sh', dir] : []), apphost, ...appArgs];
  const child = spawn(command[0]!, command.slice(1), {
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let output = '';
  let exited = false;
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true;
      running.delete(child);
      resolve();
    });
  });

  let appPid: number | undefined;
  const stop = async (): Promise<void> => {
    if (!exited) {
      if (appPid !== undefined && appPid !== child.pid) {
        try {
          process.kill(appPid, 'SIGTERM');
        } catch {
          // already gone
        }
      }
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exitPromise;
      clearTimeout(timer);
    }
    if (appPid !== undefined) await removeStaleSockets(appPid, opts.env?.TMPDIR || process.env.TMPDIR || '/tmp');
  };

  const reportedPid = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => fail(new Error(`dotnet-app did not print READY within ${opts.readyTimeoutMs ?? 60_000} ms`)),
      opts.readyTimeoutMs ?? 60_000,
    );
    const onData = (d: Buffer) => {
      output += d.toString();
      const m = /^READY (\d+)$/m.exec(output);
      if (m) {
        cleanup();
        resolve(Number(m[1]));
      }
    };
    const onExit = (code: number | null, sig: string | null) => {
      // 126/127: the shell or wrapper could not run the app at all (often: its path is hidden inside the wrapper)
      const why =
        code === 126 || code === 127
          ? `; the wrapper could not run ${apphost}: is that path hidden or missing inside the wrapper's mount namespace?`
          : '';
      fail(new Error(`dotnet-app exited before READY (code ${code}, signal ${sig})${why}`));
    };
    const onError = (err: Error) => fail(err);
    function cleanup() {
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      child.off('exit', onExit);
      child.off('error', onError);
    }
    function fail(err: Error) {
      cleanup();
      void stop();
      reject(new Error(`${err.message}\noutput:\n${output}`));
    }
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    child.once('exit', onExit);
    child.once('error', onError);
  });
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));

  const pid = findAppPid(child.pid!);
  appPid = pid;
  if (pid === undefined) {
    await stop();
    throw new Error(`dotnet-app printed READY but no process named dotnet-app is below pid ${child.pid}`);
  }
  return { pid, reportedPid, child, output: () => output, stop };
}
