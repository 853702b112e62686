// `sockwatch queues` and its state directory, end to end with the compiled CLI and a real receiver:
// damaged outbox records reported on stderr (and kept in quarantine/) while the good ones are
// delivered, state files of a newer format refused with one line, and the receiver URL from
// --url-file or SOCKWATCH_URL (one source only) so that a token stays out of /proc/PID/cmdline.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Outbox } from '../lib/alerts';
import { runCleanups } from './helpers/cleanup';
import { killCliProcesses, runCli, startCli, type CliOptions } from './helpers/cli';
import { freePort, receiver } from './helpers/http-receiver';
import { unreadConnection } from './helpers/sockets';
import { tmpDir } from './helpers/tmp';
import { waitFor } from './helpers/wait';

afterEach(async () => {
  await killCliProcesses();
  await runCleanups();
});

const QUEUES: CliOptions = { subcommand: 'queues', cwd: os.tmpdir(), unsetEnv: ['SOCKWATCH_URL'] };
/** Watches one port nothing listens on: no new alert, only what the outbox holds. */
async function quiet(): Promise<string[]> {
  return ['--recv-threshold', '1000', '--interval', '20', '--tcp', '--sport', String(await freePort())];
}

describe('sockwatch queues: damaged outbox records', () => {
  it('reports each damaged run on stderr (segment, offset, records), keeps the bytes, and delivers every good record', async () => {
    const dir = tmpDir('cli-state');
    const ob = Outbox.open({ dir });
    for (let i = 0; i < 3; i++) ob.append({ n: String(i), id: `good-${i}` }, { id: `good-${i}` });
    ob.close();
    const seg = path.join(
      dir,
      fs.readdirSync(dir).find((n) => n.startsWith('outbox-'))!,
    );
    const lines = fs.readFileSync(seg, 'utf8').split('\n');
    const offset = Buffer.byteLength(`${lines[0]}\n`);
    lines[1] = lines[1]!.replace('good-1', 'evil-1'); // checksum no longer matches
    fs.writeFileSync(seg, `${lines.join('\n')}garbled tail without a newline`);
    const tailOffset = fs.statSync(seg).size - 'garbled tail without a newline'.length;

    const rx = await receiver();
    const c = startCli(['--url', `${rx.url}/a`, '--state-dir', dir, ...(await quiet())], QUEUES);
    await rx.waitFor((r) => r.length >= 2, 20_000, 'the two good records');
    await waitFor('the watcher announced', () => /watching queues/.test(c.stderr()));
    c.child.kill('SIGTERM');
    const end = await c.exited;
    expect(end.code).toBe(0);
    expect(rx.values('id').sort()).toEqual(['good-0', 'good-2']);
    const name = path.basename(seg);
    expect(end.stderr).toContain(`outbox: skipped 1 damaged record(s) in ${name} at offset ${offset} (`);
    expect(end.stderr).toContain(
      `outbox: skipped 1 damaged record(s) in ${name} at offset ${tailOffset} (30 bytes); bytes kept in ${path.join(dir, 'quarantine')}/`,
    );
    expect(end.stderr).toContain(`${name} cut to ${tailOffset} bytes`);
    const kept = fs.readdirSync(path.join(dir, 'quarantine')).map((f) => fs.readFileSync(path.join(dir, 'quarantine', f), 'utf8'));
    expect(kept.sort()).toEqual([`${lines[1]}\n`, 'garbled tail without a newline'].sort());
  });
});

describe('sockwatch queues: state of a newer format', () => {
  it('refuses a newer outbox.meta with one line naming the file (exit 1), and touches nothing', async () => {
    const dir = tmpDir('cli-state');
    fs.writeFileSync(path.join(dir, 'outbox.meta'), '{"v":9}\n');
    const r = await runCli(['--url', 'http://127.0.0.1:9/a', '--state-dir', dir, ...(await quiet())], QUEUES);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(`^sockwatch: outbox format file ${path.join(dir, 'outbox.meta')} has format v9, written by a newer sockwatch[^\\n]*\\n$`),
    );
    expect(fs.readdirSync(dir).sort()).toEqual(['outbox.meta']);
  });

  it('refuses a newer episodes.json with one line naming the file (exit 1)', async () => {
    const dir = tmpDir('cli-state');
    const file = path.join(dir, 'episodes.json');
    fs.writeFileSync(file, '{"v":2,"episodes":[]}');
    const r = await runCli(['--url', 'http://127.0.0.1:9/a', '--state-dir', dir, ...(await quiet())], QUEUES);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^sockwatch: episodes file ${file} has format v2, written by a newer sockwatch[^\\n]*\\n$`));
    expect(fs.readFileSync(file, 'utf8')).toBe('{"v":2,"episodes":[]}');
  });
});

describe('sockwatch queues: the receiver URL off the command line', () => {
  it('reads it from --url-file (first line, trimmed) and from SOCKWATCH_URL; the token is not in /proc/PID/cmdline', async () => {
    const o = await unreadConnection('127.0.0.1', 3000);
    const watch = ['--recv-threshold', '1000', '--interval', '20', '--tcp', '--sport', String(o.port)];
    const rx = await receiver();
    const token = 'tok-3f9a7c';
    const urlFile = path.join(tmpDir('cli-state'), 'url');
    fs.writeFileSync(urlFile, `  ${rx.url}/from-file?token=${token}  \nsecond line ignored\n`, { mode: 0o600 });

    const a = startCli(['--url-file', urlFile, '--state-dir', tmpDir('cli-state'), ...watch], QUEUES);
    await rx.waitFor((r) => r.some((q) => q.path === '/from-file'), 20_000, 'an alert sent to the URL in the file');
    const cmdline = fs.readFileSync(`/proc/${a.child.pid}/cmdline`, 'utf8');
    expect(cmdline).not.toContain(token);
    expect(rx.requests.find((q) => q.path === '/from-file')!.query).toContainEqual(['token', token]);
    a.child.kill('SIGTERM');
    expect((await a.exited).code).toBe(0);
    expect(a.stderr()).not.toContain(token);

    const b = startCli(['--state-dir', tmpDir('cli-state'), ...watch], {
      ...QUEUES,
      env: { SOCKWATCH_URL: `${rx.url}/from-env?token=${token}` },
    });
    await rx.waitFor((r) => r.some((q) => q.path === '/from-env'), 20_000, 'an alert sent to the URL in SOCKWATCH_URL');
    b.child.kill('SIGTERM');
    expect((await b.exited).code).toBe(0);
    expect(b.stderr()).not.toContain(token);
    o.close();
  });

  it('exits 2 with one line when two sources are given, or the file holds no URL', async () => {
    const urlFile = path.join(tmpDir('cli-state'), 'url');
    fs.writeFileSync(urlFile, 'http://127.0.0.1:9/a?token=secret-in-file\n');
    const both = await runCli(['--url', 'http://127.0.0.1:9/b', '--url-file', urlFile], QUEUES);
    expect(both.code).toBe(2);
    expect(both.stderr).toBe(`sockwatch: the receiver URL is given twice (--url and --url-file ${urlFile}): give one\n`);
    const env = await runCli(['--url-file', urlFile], { ...QUEUES, env: { SOCKWATCH_URL: 'http://127.0.0.1:9/c' } });
    expect(env.code).toBe(2);
    expect(env.stderr).toBe(`sockwatch: the receiver URL is given twice (--url-file ${urlFile} and SOCKWATCH_URL): give one\n`);
    fs.writeFileSync(urlFile, '\n');
    const empty = await runCli(['--url-file', urlFile], QUEUES);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toBe(`sockwatch: --url-file: ${urlFile} has no URL on its first line\n`);
    fs.writeFileSync(urlFile, 'http://user:pw@[bad/a?token=abc\n');
    const bad = await runCli(['--url-file', urlFile], QUEUES);
    expect(bad.code).toBe(2);
    expect(bad.stderr.split('\n')).toHaveLength(2);
    expect(bad.stderr).not.toMatch(/pw|abc/);
  });
});
