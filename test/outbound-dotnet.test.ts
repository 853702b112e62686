// `sockwatch snat` end to end with every part real: the .NET fixture app (built with the installed
// SDK) opening N connections to a server of this test on 127.0.0.1, the compiled CLI as a child
// process, dumps and traces through the runtime's diagnostics socket, and Azurite (started here on
// a random port) receiving the uploads through a container SAS URL generated here.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createContainerSas, keyContainerClient, startAzurite, type Azurite } from './helpers/azurite';
import { runCleanups } from './helpers/cleanup';
import { killCliProcesses, startCli } from './helpers/cli';
import { dotnetSkipReason, hasDotnet, startDotnetApp, type DotnetApp } from './helpers/dotnet';
import { SNAT_ENV, deadPid, jsonRecords, readLogs } from './helpers/snat';
import { acceptingServer, cleanupSockets } from './helpers/sockets';
import { tmpDir } from './helpers/tmp';
import { waitFor, type WaitOptions } from './helpers/wait';

const skip = !hasDotnet();
if (skip) console.warn(`outbound-dotnet.test.ts: ${dotnetSkipReason()}`);

let tmp: string;
let port: number;
let azurite: Azurite;
const apps: DotnetApp[] = [];
const extraAzurites: Azurite[] = [];

/** `sockwatch snat` in the test's directory, with only the environment a test gives it. */
const snat = (args: string[], env: NodeJS.ProcessEnv = {}) => startCli(args, { subcommand: 'snat', cwd: tmp, unsetEnv: SNAT_ENV, env });
/** Collection takes a while: waits here allow a minute. */
const SLOW: WaitOptions = { ms: 60_000, everyMs: 20 };

function md5File(file: string): string {
  return createHash('md5').update(fs.readFileSync(file)).digest('base64');
}

/** Downloads a blob, hashing as it streams; returns its size, MD5 and first and last bytes. */
async function downloadBlob(
  sasBase: string,
  container: string,
  name: string,
): Promise<{ size: number; md5: string; head: Buffer; last: number }> {
  const blob = keyContainerClient(sasBase, container).getBlobClient(name);
  const res = await blob.download();
  const hash = createHash('md5');
  let size = 0;
  let head = Buffer.alloc(0);
  let last = -1;
  for await (const chunk of res.readableStreamBody as NodeJS.ReadableStream) {
    const b = chunk as Buffer;
    hash.update(b);
    if (head.length < 64) head = Buffer.concat([head, b.subarray(0, 64 - head.length)]);
    size += b.length;
    if (b.length > 0) last = b[b.length - 1]!;
  }
  return { size, md5: hash.digest('base64'), head, last };
}

/** ELF magic, 64-bit, and e_type ET_CORE (4). */
function expectElfCore(head: Buffer): void {
  expect(head.subarray(0, 4)).toEqual(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  expect(head[4]).toBe(2);
  expect(head.readUInt16LE(16)).toBe(4);
}

const unique = (name: string) => `${name}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

describe.skipIf(skip)('sockwatch snat with a real .NET app and Azurite', () => {
  beforeAll(async () => {
    tmp = tmpDir('snat-dotnet');
    ({ port } = await acceptingServer('127.0.0.1'));
    azurite = await startAzurite();
  });

  afterAll(async () => {
    await killCliProcesses();
    await Promise.all(apps.map((a) => a.stop()));
    await Promise.all([azurite, ...extraAzurites].filter(Boolean).map((a) => a.stop()));
    await cleanupSockets();
    await runCleanups();
  });

  it('detects the app over the threshold, takes a Full dump and a trace, uploads both, verifies them and exits', async () => {
    const instance = unique('e2e');
    const container = 'snat-e2e';
    const sas = await createContainerSas(azurite.url, container);
    // COMPUTERNAME and the SAS URL only in the app's environment: read from /proc/PID/environ.
    const app = await startDotnetApp('127.0.0.1', port, 12, { env: { COMPUTERNAME: instance, DIAGNOSTICS_AZUREBLOBCONTAINERSASURL: sas } });
    apps.push(app);
    const logDir = path.join(tmp, 'e2e');
    fs.mkdirSync(logDir);
    // a lock left by a run that was killed: taken over
    const dead = deadPid();
    fs.writeFileSync(path.join(logDir, `dump_taken_${instance}.lock`), `${dead}\n${JSON.stringify({ pid: dead, start: '1' })}\n`);

    const cli = snat([
      '-t',
      '10',
      '-f',
      '0.5',
      '--pid',
      String(app.pid),
      '--trace-duration',
      '2',
      '--exclude-ports',
      `80,443,2222,${port}`,
      '--log-dir',
      logDir,
      'enable-dump-trace',
    ]);
    const r = await cli.exited;
    expect(r.code, r.stdout + r.stderr).toBe(0);

    const blobs: { name: string; size: number; md5: string; metadata: Record<string, string> }[] = [];
    for await (const b of keyContainerClient(azurite.url, container).listBlobsFlat({ includeMetadata: true })) {
      blobs.push({
        name: b.name,
        size: b.properties.contentLength!,
        md5: Buffer.from(b.properties.contentMD5!).toString('base64'),
        metadata: b.metadata ?? {},
      });
    }
    const dump = blobs.find((b) => new RegExp(`^dump_${instance}_\\d{8}_\\d{6}\\.dmp$`).test(b.name));
    const trace = blobs.find((b) => new RegExp(`^trace_${instance}_\\d{8}_\\d{6}\\.nettrace$`).test(b.name));
    expect(dump, JSON.stringify(blobs)).toBeDefined();
    expect(trace).toBeDefined();

    const d = await downloadBlob(azurite.url, container, dump!.name);
    expectElfCore(d.head);
    expect(d.size).toBe(dump!.size);
    expect(d.size).toBeGreaterThan(50 * 1024 * 1024); // a Full dump holds the whole address space
    expect(d.md5).toBe(dump!.md5); // the Content-MD5 computed from the local file matches the content
    expect(dump!.metadata).toMatchObject({
      instance,
      kind: 'dump',
      dumpType: 'full',
      pid: String(app.pid),
      remote: `127.0.0.1:${port}`,
      connections: '12',
      threshold: '10',
    });

    const t = await downloadBlob(azurite.url, container, trace!.name);
    expect(t.head.subarray(0, 8).toString('latin1')).toBe('Nettrace');
    expect(t.last).toBe(0x01); // ended cleanly after the rundown
    expect(t.md5).toBe(trace!.md5);
    expect(trace!.metadata).toMatchObject({ instance, kind: 'trace', traceSeconds: '2' });

    // local files deleted once confirmed (no --keep-local), no records, locks or pidfile left
    expect(fs.readdirSync(logDir).sort()).toEqual(['.sockwatch-snat', `outconn-logs-${instance}`]);
    expect(fs.readdirSync(path.join(logDir, '.sockwatch-snat'))).toEqual([]);

    const log = readLogs(logDir, instance, 'log');
    expect(log).toMatch(new RegExp(`^127\\.0\\.0\\.1:${port} +12 +ESTABLISHED\\(12\\)`, 'm'));
    expect(log).toContain('Connection threshold exceeded');
    expect(log).toContain(`instance: ${instance} (COMPUTERNAME from process ${app.pid})`);
    expect(log).toContain(`DIAGNOSTICS_AZUREBLOBCONTAINERSASURL from process ${app.pid}`);
    expect(log).toContain(`Acquiring lock for dumping... (took over the stale lock of process ${dead}, which is no longer running)`);
    expect(log).toMatch(/: Acquiring lock for tracing\.\.\.$/m);
    expect(log).toContain(`Collecting memory dump... (full dump of process ${app.pid} to ${dump!.name})`);
    expect(log).toContain(`Collecting profiler trace... (2 s of process ${app.pid} to ${trace!.name})`);
    expect(log).toContain('Memory dump has been collected');
    expect(log).toContain(`Uploading it to Azure Blob Container '${container}' as ${dump!.name}`);
    expect(log).toContain(
      `Memory dump has been successfully uploaded to Azure Blob Container (${dump!.name}, ${dump!.size} bytes, MD5 ${dump!.md5}`,
    );
    expect(log).toContain(`Profiler trace has been successfully uploaded to Azure Blob Container (${trace!.name}`);
    expect(log).toContain('All enabled diagnostics have been collected and uploaded successfully.');
    expect(log).toContain('Initiating automatic cleanup...');
    // polling went on while collecting: polls are logged between the dump's start and its upload
    const lines = log.split('\n');
    const started = lines.findIndex((l) => l.includes('Collecting memory dump'));
    const uploaded = lines.findIndex((l) => l.includes('Memory dump has been successfully uploaded'));
    expect(lines.slice(started, uploaded).some((l) => l.startsWith('Current timestamp:'))).toBe(true);

    const steps = jsonRecords(logDir, instance).filter((o) => o.type === 'collection');
    expect(steps.map((s) => `${s.kind as string}:${s.step as string}`)).toEqual(
      expect.arrayContaining(['dump:lock-acquired', 'dump:collected', 'dump:uploaded', 'trace:collected', 'trace:uploaded']),
    );
    const sig = new URL(sas).searchParams.get('sig')!;
    for (const text of [log, readLogs(logDir, instance, 'jsonl'), r.stdout, r.stderr]) {
      expect(text).not.toContain(sig);
      expect(text).not.toContain(encodeURIComponent(sig));
    }
  }, 150_000);

  it('retries the upload while Azurite is down and completes once it is back', async () => {
    const instance = unique('down');
    const container = 'snat-down';
    const location = fs.mkdtempSync(path.join(tmp, 'azurite-'));
    const storage = await startAzurite({ location });
    extraAzurites.push(storage);
    const sas = await createContainerSas(storage.url, container);
    const app = await startDotnetApp('127.0.0.1', port, 5);
    apps.push(app);
    const logDir = path.join(tmp, 'down');
    await storage.stop();

    // The SAS URL and instance in our own environment this time.
    const cli = snat(
      ['-t', '3', '-f', '0.5', '--pid', String(app.pid), '--dump-type', 'normal', '--keep-local', '--log-dir', logDir, 'enable-dump'],
      {
        COMPUTERNAME: instance,
        DIAGNOSTICS_AZUREBLOBCONTAINERSASURL: sas,
      },
    );
    // Default backoff (2 s doubling, equal jitter): at least 15 s from the first retry to the last attempt.
    await waitFor('a retry', () => /Memory dump upload: retry 2\/5 in [\d.]+ s: ECONNREFUSED/.test(cli.output()), {
      ...SLOW,
      detail: () => `output so far:\n${cli.output()}`,
    });
    await storage.restart();
    const r = await cli.exited;
    expect(r.code, r.stdout + r.stderr).toBe(0);

    const log = readLogs(logDir, instance, 'log');
    expect(log).toMatch(/Memory dump upload: retry 2\/5 in [\d.]+ s: ECONNREFUSED/);
    expect(log).toMatch(/Memory dump has been successfully uploaded to Azure Blob Container \(dump_.*, \d+ attempts\)/);
    const local = fs.readdirSync(logDir).find((n) => n.startsWith(`dump_${instance}_`) && n.endsWith('.dmp'))!;
    expect(local).toBeDefined(); // --keep-local
    const props = await keyContainerClient(storage.url, container).getBlobClient(local).getProperties();
    expect(props.contentLength).toBe(fs.statSync(path.join(logDir, local)).size);
    expect(Buffer.from(props.contentMD5!).toString('base64')).toBe(md5File(path.join(logDir, local)));
    const d = await downloadBlob(storage.url, container, local);
    expectElfCore(d.head);
    expect(d.md5).toBe(md5File(path.join(logDir, local)));
  }, 120_000);

  it('resumes an upload interrupted by SIGKILL in the next run, reusing the staged blocks', async () => {
    const instance = unique('kill');
    const container = 'snat-kill';
    const sas = await createContainerSas(azurite.url, container);
    const app = await startDotnetApp('127.0.0.1', port, 5, { env: { COMPUTERNAME: instance, DIAGNOSTICS_AZUREBLOBCONTAINERSASURL: sas } });
    apps.push(app);
    const logDir = path.join(tmp, 'kill');
    const args = [
      '-t',
      '3',
      '-f',
      '0.5',
      '--pid',
      String(app.pid),
      '--dump-type',
      'normal',
      '--keep-local',
      '--log-dir',
      logDir,
      'enable-dump',
    ];
    // Small blocks, one at a time (test hooks), so that the kill lands in the middle of the upload.
    const first = snat(args, { SOCKWATCH_UPLOAD_BLOCK_SIZE: '16384', SOCKWATCH_UPLOAD_CONCURRENCY: '1' });
    let progress: Record<string, unknown> | undefined;
    await waitFor(
      'upload progress',
      () => {
        progress = jsonRecords(logDir, instance).find((o) => o.step === 'upload-progress' && (o.doneBlocks as number) > 0);
        return progress !== undefined;
      },
      SLOW,
    );
    first.child.kill('SIGKILL');
    await first.exited;
    expect(progress!.doneBlocks as number).toBeLessThan(progress!.totalBlocks as number);
    const dumpName = fs.readdirSync(logDir).find((n) => n.startsWith(`dump_${instance}_`) && n.endsWith('.dmp'))!;
    const dumpPath = path.join(logDir, dumpName);
    const localMd5 = md5File(dumpPath);
    expect(fs.existsSync(path.join(logDir, '.sockwatch-snat', `pending-${dumpName}.json`))).toBe(true);
    expect(fs.existsSync(path.join(logDir, `dump_taken_${instance}.lock`))).toBe(true); // left by the killed run
    expect(fs.existsSync(path.join(logDir, 'sockwatch-snat.pid'))).toBe(true);

    // The next run (without the hooks: the block size comes from the pending record) resumes it.
    const second = await snat(args).exited;
    expect(second.code, second.stdout + second.stderr).toBe(0);
    expect(second.stdout).toContain(`took over the stale pidfile of process ${first.child.pid}`);
    expect(second.stdout).toContain(`found the pending upload of ${dumpName}`);
    const resumed = /resuming upload [0-9a-f]+: (\d+)\/(\d+) blocks already staged/.exec(second.stdout);
    expect(resumed, second.stdout).not.toBeNull();
    expect(Number(resumed![1])).toBeGreaterThan(0);
    expect(Number(resumed![1])).toBeLessThan(Number(resumed![2]));
    expect(second.stdout).toMatch(/blocks reused from an interrupted run/);
    expect(second.stdout).not.toContain('Collecting memory dump'); // the interrupted collection counts, no second dump
    const props = await keyContainerClient(azurite.url, container).getBlobClient(dumpName).getProperties();
    expect(props.contentLength).toBe(fs.statSync(dumpPath).size);
    expect(Buffer.from(props.contentMD5!).toString('base64')).toBe(localMd5);
    const d = await downloadBlob(azurite.url, container, dumpName);
    expect(d.md5).toBe(localMd5);
    expectElfCore(d.head);
    // everything cleaned up: the stale lock of the killed run too
    expect(fs.readdirSync(logDir).filter((n) => n.endsWith('.lock') || n.endsWith('.pid'))).toEqual([]);
    expect(fs.readdirSync(path.join(logDir, '.sockwatch-snat'))).toEqual([]);
  }, 120_000);

  it('on SIGTERM during an upload, stops with exit code 0, keeps the upload pending and removes its pidfile and locks', async () => {
    const instance = unique('term');
    const sas = await createContainerSas(azurite.url, 'snat-term');
    const app = await startDotnetApp('127.0.0.1', port, 5, { env: { COMPUTERNAME: instance, DIAGNOSTICS_AZUREBLOBCONTAINERSASURL: sas } });
    apps.push(app);
    const logDir = path.join(tmp, 'term');
    const cli = snat(['-t', '3', '-f', '0.5', '--pid', String(app.pid), '--dump-type', 'normal', '--log-dir', logDir, 'enable-dump'], {
      SOCKWATCH_UPLOAD_BLOCK_SIZE: '16384',
      SOCKWATCH_UPLOAD_CONCURRENCY: '1',
    });
    await waitFor('upload progress', () => jsonRecords(logDir, instance).some((o) => o.step === 'upload-progress'), SLOW);
    cli.child.kill('SIGTERM');
    const r = await cli.exited;
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const dumpName = fs.readdirSync(logDir).find((n) => n.startsWith(`dump_${instance}_`) && n.endsWith('.dmp'))!;
    expect(r.stdout).toContain(`The upload of ${dumpName} was interrupted; it resumes at the next start.`);
    expect(r.stdout).toContain('Completed');
    const state = fs.readdirSync(path.join(logDir, '.sockwatch-snat'));
    expect(state).toContain(`pending-${dumpName}.json`);
    expect(state.some((n) => n.startsWith(dumpName) && n.endsWith('.upload.json'))).toBe(true);
    expect(fs.readdirSync(logDir).filter((n) => n.endsWith('.lock') || n.endsWith('.pid'))).toEqual([]);
  }, 90_000);

  it('without a SAS URL, collects locally, warns, keeps the file and exits; a SAS URL that cannot write is refused at start', async () => {
    const instance = unique('local');
    const app = await startDotnetApp('127.0.0.1', port, 4, { env: { COMPUTERNAME: instance } });
    apps.push(app);
    const logDir = path.join(tmp, 'local');
    const r = await snat(['-t', '3', '-f', '0.5', '--pid', String(app.pid), '--trace-duration', '1', '--log-dir', logDir, 'enable-trace'])
      .exited;
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stderr).toContain(
      "DIAGNOSTICS_AZUREBLOBCONTAINERSASURL is not set (here or in the target's environment): dumps and traces are kept locally",
    );
    const trace = fs.readdirSync(logDir).find((n) => n.startsWith(`trace_${instance}_`) && n.endsWith('.nettrace'))!;
    expect(trace).toBeDefined();
    expect(fs.readFileSync(path.join(logDir, trace)).subarray(0, 8).toString('latin1')).toBe('Nettrace');
    expect(r.stderr).toContain(
      `WARNING: no DIAGNOSTICS_AZUREBLOBCONTAINERSASURL: the profiler trace is kept locally at ${path.join(logDir, trace)}`,
    );
    expect(readLogs(logDir, instance, 'log')).toContain(
      `All enabled diagnostics have been collected (kept locally in ${logDir}: no DIAGNOSTICS_AZUREBLOBCONTAINERSASURL).`,
    );

    const readOnly = await createContainerSas(azurite.url, 'snat-ro', { permissions: 'rl' });
    const refused = await snat(['--pid', String(app.pid), '--log-dir', logDir, 'enable-dump'], {
      DIAGNOSTICS_AZUREBLOBCONTAINERSASURL: readOnly,
    }).exited;
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(
      'sockwatch: DIAGNOSTICS_AZUREBLOBCONTAINERSASURL (from the environment): grants sp=rl; uploads need r and w\n',
    );
  }, 90_000);

  it('without --pid, watches the .NET process owning the most outbound connections and says why', async () => {
    const small = await startDotnetApp('127.0.0.1', port, 2);
    apps.push(small);
    const big = await startDotnetApp('127.0.0.1', port, 30, { env: { COMPUTERNAME: 'pick-me' } });
    apps.push(big);
    const logDir = path.join(tmp, 'pick');
    const r = await snat(['-f', '0.5', '-d', '0.0002', '--exclude-ports', `80,443,2222,${port}`, '--log-dir', logDir]).exited;
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      new RegExp(
        `target: pid ${big.pid} \\(.*dotnet-app.*\\) owns the most outbound connections \\(30\\) of \\d+ \\.NET processes: .*pid ${small.pid}: 2`,
      ),
    );
    expect(readLogs(logDir, 'pick-me', 'log')).toContain('instance: pick-me (COMPUTERNAME from process');
  }, 90_000);
});
