// Files `sockwatch snat` writes are never written through a symbolic link (lib/base/fs.ts rule): a
// link planted at the pidfile path (the CLI end to end) and at the trace and dump output paths (a
// real .NET app's diagnostics socket) is refused with one line, and the file it points to is untouched.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeDump } from '../lib/dotnet/dump';
import { collectTrace } from '../lib/dotnet/trace';
import { killCliProcesses, runCli } from './helpers/cli';
import { dotnetSkipReason, hasDotnet, startDotnetApp, type DotnetApp } from './helpers/dotnet';
import { SNAT_ENV } from './helpers/snat';
import { acceptingServer, cleanupSockets } from './helpers/sockets';
import { tmpDir } from './helpers/tmp';

let tmp: string;
let victim: string;
const VICTIM_TEXT = 'untouched\n';

beforeAll(() => {
  tmp = tmpDir('snat-links-');
  victim = path.join(tmp, 'victim.txt');
  fs.writeFileSync(victim, VICTIM_TEXT);
});

afterAll(async () => {
  await killCliProcesses();
  await cleanupSockets();
});

it('snat refuses a symbolic link planted at its pidfile path: one line, exit 1, the target untouched', async () => {
  const logDir = path.join(tmp, 'pidfile');
  fs.mkdirSync(logDir);
  const link = path.join(logDir, 'sockwatch-snat.pid');
  fs.symlinkSync(victim, link);
  const r = await runCli(['-f', '0.3', '-d', '0.0002', '--pid', String(process.pid), '--log-dir', logDir], {
    subcommand: 'snat',
    cwd: tmp,
    unsetEnv: SNAT_ENV,
    env: { COMPUTERNAME: 'links' },
  });
  expect(r.code).toBe(1);
  expect(r.stderr).toBe(`sockwatch: lock file ${link} is a symbolic link; refusing to follow it\n`);
  expect(fs.readFileSync(victim, 'utf8')).toBe(VICTIM_TEXT);
  expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
  // nothing was started: no log directory, no temporary lock file left beside the link
  expect(fs.readdirSync(logDir)).toEqual(['sockwatch-snat.pid']);
});

describe.skipIf(!hasDotnet())('dump and trace outputs of a real .NET app', () => {
  let app: DotnetApp;
  beforeAll(async () => {
    if (!hasDotnet()) return;
    const server = await acceptingServer('127.0.0.1');
    app = await startDotnetApp('127.0.0.1', server.port, 1);
  }, 240_000);
  afterAll(async () => {
    await app?.stop();
  });
  if (!hasDotnet()) console.warn(`outbound-links.test.ts: ${dotnetSkipReason()}`);

  it('a link at the trace output path is refused before any session starts; the target is untouched', async () => {
    const link = path.join(tmp, 'trace_links.nettrace');
    fs.symlinkSync(victim, link);
    const err = await collectTrace(app.pid, link, { durationMs: 500 }).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toBe(`refusing to write the trace to ${link}: it is a symbolic link`);
    expect(err).toMatchObject({ code: 'ELOOP', path: link });
    expect(fs.readFileSync(victim, 'utf8')).toBe(VICTIM_TEXT);
    // a dangling link (to a file that does not exist yet) is refused too, and nothing is created
    const dangling = path.join(tmp, 'trace_dangling.nettrace');
    const absent = path.join(tmp, 'would-be-created.txt');
    fs.symlinkSync(absent, dangling);
    await expect(collectTrace(app.pid, dangling, { durationMs: 500 })).rejects.toThrow(/it is a symbolic link$/);
    expect(fs.existsSync(absent)).toBe(false);
    // the app is still fine: a trace to a free path works
    const ok = await collectTrace(app.pid, path.join(tmp, 'trace_ok.nettrace'), { durationMs: 500 });
    expect(ok.bytes).toBeGreaterThan(0);
  }, 60_000);

  it('a link at the dump output path is refused before the runtime is asked; the target is untouched', async () => {
    const link = path.join(tmp, 'dump_links.dmp');
    fs.symlinkSync(victim, link);
    const err = await writeDump(app.pid, link, { type: 'normal' }).catch((e: unknown) => e as Error);
    expect((err as Error).message).toBe(`refusing to write the dump to ${link}: it is a symbolic link`);
    expect(err).toMatchObject({ code: 'ELOOP', path: link });
    expect(fs.readFileSync(victim, 'utf8')).toBe(VICTIM_TEXT);
  }, 60_000);
});
