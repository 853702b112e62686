// Secrets given to the CLI never reach the terminal or a file, end to end (the compiled CLI as a
// child process, a real HTTP receiver on loopback). The rule under test is lib/base/redact.ts's:
// user info of anything that looks like a URL, parsed or not, and the values of secret-named query
// parameters, are replaced wherever sockwatch prints or records them. Plus the state dir's one mode:
// every file in it, outbox.lock included, is 0600.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { redactText } from '../lib/base/redact';
import { runCleanups } from './helpers/cleanup';
import { killCliProcesses, runCli, startCli } from './helpers/cli';
import { receiver } from './helpers/http-receiver';
import { cleanupSockets, unreadConnection } from './helpers/sockets';
import { tmpDir } from './helpers/tmp';
import { waitFor } from './helpers/wait';

afterEach(async () => {
  await killCliProcesses();
  await runCleanups();
});
afterAll(cleanupSockets);

/** A value no other text contains by chance. */
const secret = (label: string): string => `${label}Zq${randomBytes(6).toString('hex')}`;

/** Every regular file under `dir`, with its content and mode. */
function filesUnder(dir: string): Array<{ file: string; content: string; mode: number }> {
  const out: Array<{ file: string; content: string; mode: number }> = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const file = path.join(e.parentPath, e.name);
    out.push({ file, content: fs.readFileSync(file, 'utf8'), mode: fs.statSync(file).mode & 0o777 });
  }
  return out;
}

describe('an invalid --url is never echoed with its credentials', () => {
  it.each([
    ['an unparseable host', (u: string, p: string, t: string) => `http://${u}:${p}@[bad/a?token=${t}`],
    ['a port out of range', (u: string, p: string, t: string) => `http://${u}:${p}@127.0.0.1:99999/a?token=${t}`],
    ['no scheme', (u: string, p: string, t: string) => `${u}:${p}@127.0.0.1/a?token=${t}`],
    ['another scheme', (u: string, p: string, t: string) => `ftp://${u}:${p}@127.0.0.1/a?token=${t}`],
  ])('%s: exit 2, one line, no user, password or token on stderr or in any file', async (_what, make) => {
    const [user, pass, token] = [secret('user'), secret('pw'), secret('tok')];
    const cwd = tmpDir('cli-secrets');
    const state = path.join(cwd, 'state');
    const r = await runCli(['queues', '--url', make(user, pass, token), '--state-dir', state], { cwd });
    expect(r.code).toBe(2);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^sockwatch: --url: /);
    const shown = r.stdout + r.stderr;
    for (const s of [user, pass, token]) expect(shown).not.toContain(s);
    expect(shown).not.toContain(`${user}:${pass}`);
    expect(filesUnder(cwd)).toEqual([]);
  });
});

// The names issue 8 lists; mixed case is the same name (the rule compares lower case).
const SECRET_NAMES = [
  'pass',
  'private_key',
  'jwt',
  'password',
  'pwd',
  'apikey',
  'api_key',
  'access_token',
  'refresh_token',
  'client_secret',
  'secret',
  'signature',
  'auth',
  'authorization',
  'credential',
  'session',
  'code',
  'Client_Secret',
];

describe('a receiver that refuses an alert', () => {
  it('dead-letter.jsonl, the outbox files and stderr hold none of the secret values; every state file is 0600', async () => {
    const values = new Map(SECRET_NAMES.map((n) => [n, secret(n.replace(/_/g, ''))]));
    const [user, pass, bodySecret] = [secret('user'), secret('pw'), secret('body')];
    // A receiver that echoes a secret back in its refusal, as some do.
    const rx = await receiver({ defaultReply: { status: 400, body: `refused: password=${bodySecret}` } });
    const query = [...values].map(([n, v]) => `${n}=${v}`).join('&');
    const url = `http://${user}:${pass}@127.0.0.1:${rx.port}/hook?${query}&team=visible`;
    const offender = await unreadConnection('127.0.0.1', 3000);
    const dir = tmpDir('cli-secrets');
    const c = startCli(
      [
        'queues',
        '--url',
        url,
        '--state-dir',
        dir,
        '--recv-threshold',
        '1000',
        '--tcp',
        '--sport',
        String(offender.port),
        '--src',
        '127.0.0.1', // the port number alone can be another test's socket on another address
        '--interval',
        '20',
      ],
      { cwd: dir },
    );
    await rx.waitForRequests(1);
    // The secrets did reach the receiver: what is checked below is what sockwatch kept and printed.
    expect(rx.requests[0]!.query).toEqual(expect.arrayContaining([...values].map(([n, v]) => [n, v])));
    const deadFile = path.join(dir, 'dead-letter.jsonl');
    await waitFor('the dead letter', () => fs.existsSync(deadFile) && fs.readFileSync(deadFile, 'utf8').endsWith('\n'));
    await c.waitFor('the alert line', (l) => l.length >= 1);

    // While it runs: the lock and every other file of the state dir have one mode.
    const running = filesUnder(dir);
    expect(running.map((f) => path.basename(f.file))).toContain('outbox.lock');
    for (const f of running)
      expect({ file: path.basename(f.file), mode: f.mode.toString(8) }).toEqual({ file: path.basename(f.file), mode: '600' });

    c.child.kill('SIGTERM');
    const r = await c.exited;
    expect(r.code).toBe(0);

    const dead = JSON.parse(fs.readFileSync(deadFile, 'utf8').trim().split('\n')[0]!);
    expect(dead.reason.status).toBe(400);
    // The refusal is recorded with its URL, secrets replaced and the rest kept.
    expect(dead.reason.url).toContain('team=visible');
    for (const n of SECRET_NAMES) expect(dead.reason.url).toContain(`${n}=REDACTED`);
    expect(dead.reason.body).toBe('refused: password=REDACTED');

    const everything = [r.stdout, r.stderr, ...filesUnder(dir).map((f) => `${f.file}\n${f.content}`)].join('\n');
    expect(r.stderr).toMatch(/receiver refused alert [0-9a-f]{32} with HTTP 400/);
    // The start line shows the URL redacted and otherwise as given (the comma after it stays a comma).
    const shownQuery = SECRET_NAMES.map((n) => `${n}=REDACTED`).join('&');
    expect(r.stderr).toContain(`alerts to http://REDACTED:REDACTED@127.0.0.1:${rx.port}/hook?${shownQuery}&team=visible, outbox ${dir}\n`);
    for (const [n, v] of values) expect(everything, `value of ${n}`).not.toContain(v);
    for (const s of [user, pass, bodySecret]) expect(everything).not.toContain(s);
  });
});

describe('redactText: a URL inside a sentence', () => {
  it.each([
    ['alerts to http://u:p@h:1/a?sig=S&team=ok, outbox /x', 'alerts to http://REDACTED:REDACTED@h:1/a?sig=REDACTED&team=ok, outbox /x'],
    ['see http://h/a?token=abc&b=1.', 'see http://h/a?token=REDACTED&b=1.'],
    ['(http://[::1]:8080/x?sig=1&b=2)', '(http://[::1]:8080/x?sig=REDACTED&b=2)'],
  ])('%s keeps the punctuation after the URL', (text, shown) => {
    expect(redactText(text)).toBe(shown);
  });

  it.each([
    ['http://h/a?token=abc!', '!'],
    ['http://h/a?password=pa55)', ')'],
    ['http://u:p@[bad/a?token=S3cr,', ','],
    ['failed: http://h/a?sig=xyz.', '.'],
  ])('%s: punctuation that may end the secret value is redacted with it', (text, last) => {
    const out = redactText(text);
    expect(out).toMatch(/REDACTED$/);
    expect(out).not.toContain(last === '.' ? 'xyz' : last);
  });
});
