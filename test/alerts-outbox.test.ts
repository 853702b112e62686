// The durable outbox on a real file system: recovery after SIGKILL and torn lines, bounds, space
// reclaim, the state-dir lock and unusable directories. Child processes run the outbox compiled to
// plain JS (typescript.transpileModule), since Node 20 cannot run .ts itself.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import ts from 'typescript';
import { Outbox, StateDirLockedError, LOCK_FILE, DEAD_LETTER_FILE } from '../lib/alerts';
import type { OutboxDroppedEvent } from '../lib';
import { runCleanups } from './helpers/cleanup';
import { tmpDir } from './helpers/tmp';

const root = path.join(__dirname, '..');
const children: ChildProcess[] = [];
let compiled: string; // dir holding lib/alerts/*.js and lib/base/*.js

function segmentFiles(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((n) => /^outbox-\d+\.log$/.test(n))
    .sort();
}

function compileForChildren(): string {
  const out = tmpDir('outbox');
  const sources = [
    ...fs
      .readdirSync(path.join(root, 'lib', 'alerts'))
      .filter((f) => f.endsWith('.ts'))
      .map((f) => path.join('lib', 'alerts', f)),
    ...fs
      .readdirSync(path.join(root, 'lib', 'base'))
      .filter((f) => f.endsWith('.ts'))
      .map((f) => path.join('lib', 'base', f)),
  ];
  for (const rel of sources) {
    const js = ts.transpileModule(fs.readFileSync(path.join(root, rel), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    }).outputText;
    const dest = path.join(out, rel.replace(/\.ts$/, '.js'));
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.writeFileSync(dest, js);
  }
  return out;
}

function waitExit(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

beforeAll(() => {
  compiled = compileForChildren();
});

afterAll(async () => {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await waitExit(c);
  }
  await runCleanups();
});

describe('Outbox basics', () => {
  it('returns appended records after reopen until they are acked or dead-lettered', () => {
    const dir = tmpDir('outbox');
    const ob = Outbox.open({ dir });
    const a = ob.append({ type: 'send', bytes: '70000', id: 'alert-a' }, { createdAt: 1_700_000_000_123 });
    const b = ob.append({ type: 'recv', bytes: '1' });
    const c = ob.append({ type: 'accept', bytes: '2' }, { id: 'given-c' });
    expect(a.id).toBe('alert-a'); // params.id is the stable id
    expect(b.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(c.id).toBe('given-c');
    expect([a.seq, b.seq, c.seq]).toEqual([1, 2, 3]);
    expect(ob.ack(b.seq)).toBe(true);
    expect(ob.ack(b.seq)).toBe(false);
    expect(ob.deadLetter(c.seq, { status: 404, body: 'no such hook token=abc123', url: 'http://u:pw@h/x?sig=s3cr3t' })).toBe(true);
    ob.close();

    const again = Outbox.open({ dir });
    expect(again.recovery.records).toBe(1);
    expect(again.pending()).toEqual([
      { seq: 1, id: 'alert-a', createdAt: 1_700_000_000_123, params: { type: 'send', bytes: '70000', id: 'alert-a' } },
    ]);
    const next = again.append({ type: 'send' });
    expect(next.seq).toBe(4); // sequence numbers never repeat
    again.close();

    const dl = fs
      .readFileSync(path.join(dir, DEAD_LETTER_FILE), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(dl).toHaveLength(1);
    expect(dl[0]).toMatchObject({ id: 'given-c', params: { type: 'accept', bytes: '2' }, reason: { status: 404 } });
    expect(dl[0].reason.body).toContain('no such hook');
    const text = JSON.stringify(dl);
    expect(text).not.toContain('abc123');
    expect(text).not.toContain('s3cr3t');
    expect(text).not.toContain(':pw@');
  });

  it('rejects bad params and options with errors naming them', () => {
    const dir = tmpDir('outbox');
    expect(() => Outbox.open({ dir, maxRecords: 0 })).toThrow(/options.maxRecords must be an integer of at least 1 \(got 0\)/);
    expect(() => Outbox.open({ dir, maxRecords: '5' as never })).toThrow(TypeError);
    expect(() => Outbox.open({ dir, fsync: 'sometimes' as never })).toThrow(/options.fsync must be one of 'always', 'batch', 'never'/);
    expect(() => Outbox.open({ dir, maxBytez: 5 } as never)).toThrow(/unknown option "maxBytez" \(did you mean "maxBytes"\?\)/);
    const ob = Outbox.open({ dir, maxBytes: 4096 });
    expect(() => ob.append({ bytes: 5 as unknown as string })).toThrow(/alert param "bytes" must be a string/);
    expect(() => ob.append({ big: 'x'.repeat(5000) })).toThrow(RangeError);
    ob.close();
    expect(() => ob.append({ a: '1' })).toThrow(/closed/);
  });
});

describe('Outbox recovery after a crash', () => {
  it('keeps every appended alert when the writer is SIGKILLed mid-way, and drops a torn last line', async () => {
    const dir = tmpDir('outbox');
    const script = path.join(compiled, 'append-forever.js');
    fs.writeFileSync(
      script,
      `const fs = require('node:fs');
       const { Outbox } = require(${JSON.stringify(path.join(compiled, 'lib/alerts/outbox.js'))});
       const ob = Outbox.open({ dir: process.argv[2], fsync: 'never', segmentMaxBytes: 4096 });
       for (let i = 0; ; i++) {
         const r = ob.append({ n: String(i), type: 'send', local: '127.0.0.1:5000' }, { id: 'a' + i, createdAt: 1000 + i });
         if (i % 3 === 0) ob.ack(r.seq);
         fs.writeSync(1, i + '\\n'); // reported only after the append (and ack) returned
       }`,
    );
    const child = spawn(process.execPath, [script, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    let reported = -1;
    let buffered = '';
    await new Promise<void>((resolve, reject) => {
      child.on('exit', () => reject(new Error('writer exited before it was killed')));
      child.stdout!.on('data', (d: Buffer) => {
        buffered += d.toString();
        const lines = buffered.split('\n');
        buffered = lines.pop()!;
        if (lines.length) reported = Number(lines[lines.length - 1]);
        if (reported >= 300) {
          child.kill('SIGKILL'); // while it keeps appending
          resolve();
        }
      });
    });
    child.stdout!.destroy();
    await waitExit(child);
    expect(child.signalCode).toBe('SIGKILL');

    const segments = segmentFiles(dir);
    expect(segments.length).toBeGreaterThan(1); // rotation happened during the run
    const last = path.join(dir, segments[segments.length - 1]!);
    const torn = '0badc0de {"s":999999,"i":"torn","t":1,"p":{"n":"tor';
    fs.appendFileSync(last, torn);
    fs.appendFileSync(path.join(dir, 'acks.log'), '1234abcd {"s":2,"r":"deliv');

    const ob = Outbox.open({ dir });
    expect(ob.lockTakenOverFrom).toBe(child.pid); // the dead writer's lock did not block us
    expect(ob.recovery.tornBytes).toBeGreaterThanOrEqual(torn.length);
    const byN = new Map(ob.pending().map((r) => [Number(r.params.n), r]));
    expect(byN.has(999999)).toBe(false);
    for (let i = 0; i <= reported; i++) {
      if (i % 3 === 0) expect(byN.has(i), `acked alert ${i} must not come back`).toBe(false);
      else {
        expect(byN.get(i), `alert ${i} was appended before the kill`).toMatchObject({ id: `a${i}`, createdAt: 1000 + i });
      }
    }
    // Anything beyond the last report was appended in the instant before the kill: still a real alert.
    for (const [n, r] of byN) if (n > reported) expect(r.id).toBe(`a${n}`);
    const seqs = ob.pending().map((r) => r.seq);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));

    // The torn tail was cut, so a new record is not glued to it.
    const fresh = ob.append({ n: 'after-crash' });
    ob.close();
    const again = Outbox.open({ dir });
    expect(again.get(fresh.seq)?.params.n).toBe('after-crash');
    expect(again.recovery.tornBytes).toBe(0);
    expect(again.recovery.corruptLines).toBe(0);
    again.close();
  });

  it('skips a damaged line in the middle and keeps the records after it', () => {
    const dir = tmpDir('outbox');
    const ob = Outbox.open({ dir });
    for (let i = 0; i < 3; i++) ob.append({ n: String(i) });
    ob.close();
    const seg = path.join(dir, segmentFiles(dir)[0]!);
    const lines = fs.readFileSync(seg, 'utf8').split('\n');
    lines[1] = lines[1]!.replace('"n":"1"', '"n":"X"'); // checksum no longer matches
    fs.writeFileSync(seg, lines.join('\n'));
    const again = Outbox.open({ dir });
    expect(again.recovery.corruptLines).toBe(1);
    expect(again.pending().map((r) => r.params.n)).toEqual(['0', '2']);
    again.close();
  });
});

describe('Outbox copies', () => {
  it('counts a record copied forward before a crash once, and an ack covers both copies', () => {
    const dir = tmpDir('outbox');
    const ob = Outbox.open({ dir });
    for (let i = 1; i <= 3; i++) ob.append({ n: String(i) });
    ob.close();
    // As if a copy-forward wrote record 2 into a newer segment and the process died before the old one went.
    const first = path.join(dir, segmentFiles(dir)[0]!);
    const line2 = fs.readFileSync(first, 'utf8').split('\n')[1]!;
    fs.writeFileSync(path.join(dir, 'outbox-0000000000000004.log'), `${line2}\n`);
    const a = Outbox.open({ dir });
    expect(a.pending().map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(a.ack(2)).toBe(true);
    a.close();
    const b = Outbox.open({ dir });
    expect(b.pending().map((r) => r.seq)).toEqual([1, 3]);
    expect(b.append({ n: '4' }).seq).toBe(4);
    b.ack(1);
    b.ack(3);
    expect(segmentFiles(dir)).toEqual(['outbox-0000000000000004.log']);
    b.close();
    const c = Outbox.open({ dir });
    expect(c.pending().map((r) => r.params.n)).toEqual(['4']);
    c.close();
  });

  it('rotates dead-letter.jsonl past deadLetterMaxBytes (fsync always)', () => {
    const dir = tmpDir('outbox');
    const ob = Outbox.open({ dir, deadLetterMaxBytes: 600, fsync: 'always' });
    for (let i = 0; i < 3; i++) ob.deadLetter(ob.append({ n: String(i), pad: 'p'.repeat(100) }).seq, { status: 400 });
    ob.close();
    const read = (f: string) =>
      fs
        .readFileSync(path.join(dir, f), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).params.n);
    expect(read(DEAD_LETTER_FILE)).toEqual(['2']);
    expect(read(`${DEAD_LETTER_FILE}.1`)).toEqual(['0', '1']);
  });
});

describe('Outbox bounds and space', () => {
  it('drops the oldest undelivered alerts past maxRecords, counts and reports them', () => {
    const dir = tmpDir('outbox');
    const ob = Outbox.open({ dir, maxRecords: 5 });
    const dropped: OutboxDroppedEvent[] = [];
    ob.on('dropped', (e) => dropped.push(e));
    for (let i = 0; i < 8; i++) ob.append({ n: String(i) });
    expect(ob.droppedTotal).toBe(3);
    expect(ob.stats()).toMatchObject({ pending: 5, droppedTotal: 3, appendedTotal: 8 });
    expect(dropped.map((e) => [e.record.params.n, e.reason])).toEqual([
      ['0', 'maxRecords'],
      ['1', 'maxRecords'],
      ['2', 'maxRecords'],
    ]);
    ob.close();
    const again = Outbox.open({ dir, maxRecords: 5 });
    expect(again.pending().map((r) => r.params.n)).toEqual(['3', '4', '5', '6', '7']);
    again.close();
  });

  it('drops by maxBytes too, and on open when the bounds were lowered', async () => {
    const dir = tmpDir('outbox');
    const ob = Outbox.open({ dir, maxBytes: 4096 });
    for (let i = 0; i < 40; i++) ob.append({ n: String(i), pad: 'p'.repeat(200) });
    const s = ob.stats();
    expect(s.pendingBytes).toBeLessThanOrEqual(4096);
    expect(s.droppedTotal).toBeGreaterThan(0);
    expect(s.pending + s.droppedTotal).toBe(40);
    expect(ob.pending().at(-1)?.params.n).toBe('39');
    ob.close();

    const lowered = Outbox.open({ dir, maxRecords: 2 });
    const events: OutboxDroppedEvent[] = [];
    lowered.on('dropped', (e) => events.push(e)); // emitted on the next tick, so listeners see them
    await new Promise((r) => process.nextTick(r));
    expect(lowered.recovery.dropped).toBe(s.pending - 2);
    expect(events).toHaveLength(s.pending - 2);
    expect(lowered.pending().map((r) => r.params.n)).toEqual(['38', '39']);
    lowered.close();
  });

  it('deletes fully delivered segments and rewrites the ack log, so files do not grow forever', () => {
    const dir = tmpDir('outbox');
    const ob = Outbox.open({ dir, segmentMaxBytes: 4096, fsync: 'never' });
    for (let i = 0; i < 20_000; i++) ob.ack(ob.append({ n: String(i), type: 'send' }).seq);
    expect(segmentFiles(dir)).toHaveLength(1);
    expect(fs.statSync(path.join(dir, segmentFiles(dir)[0]!)).size).toBeLessThanOrEqual(4096);
    expect(fs.statSync(path.join(dir, 'acks.log')).size).toBeLessThan(400 * 1024); // ~20,000 acks would be ~600 KiB
    ob.close();
    const again = Outbox.open({ dir });
    expect(again.size).toBe(0);
    expect(again.append({ n: 'x' }).seq).toBe(20_001);
    again.close();
  });

  it('copies slow alerts forward instead of letting them pin old segments', () => {
    const dir = tmpDir('outbox');
    const maxBytes = 64 * 1024;
    const ob = Outbox.open({ dir, maxBytes, segmentMaxBytes: 8192, fsync: 'never' });
    const stuck: string[] = []; // one undelivered alert in every segment's worth of delivered ones
    let maxSegments = 0;
    let maxAcks = 0;
    for (let i = 0; i < 5000; i++) {
      const r = ob.append({ n: String(i), pad: 'p'.repeat(100) });
      if (i % 40 === 0) stuck.push(r.params.n!);
      else ob.ack(r.seq);
      if (i % 50 === 0) {
        maxSegments = Math.max(
          maxSegments,
          segmentFiles(dir).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0),
        );
        maxAcks = Math.max(maxAcks, fs.statSync(path.join(dir, 'acks.log')).size);
      }
    }
    expect(maxSegments).toBeLessThanOrEqual(2 * maxBytes + 8192); // all 5000 records are ~750 KiB
    expect(maxAcks).toBeLessThanOrEqual(128 * 1024);
    expect(ob.pending().map((r) => r.params.n)).toEqual(stuck);
    ob.close();
    const again = Outbox.open({ dir, maxBytes });
    expect(again.pending().map((r) => r.params.n)).toEqual(stuck);
    again.close();
  });
});

describe('state directory', () => {
  it('refuses a second user of the same directory, in this process and from a live process', async () => {
    const dir = tmpDir('outbox');
    const ob = Outbox.open({ dir });
    expect(() => Outbox.open({ dir })).toThrow(StateDirLockedError);
    expect(() => Outbox.open({ dir })).toThrow(dir);
    ob.close();

    const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    children.push(sleeper);
    const dir2 = tmpDir('outbox');
    const start = fs.readFileSync(`/proc/${sleeper.pid}/stat`, 'latin1').split(') ')[1]!.split(' ')[19];
    fs.writeFileSync(path.join(dir2, LOCK_FILE), JSON.stringify({ pid: sleeper.pid, start }));
    expect(() => Outbox.open({ dir: dir2 })).toThrow(new RegExp(`in use by process ${sleeper.pid}`));
    sleeper.kill('SIGKILL');
    await waitExit(sleeper);
    const taken = Outbox.open({ dir: dir2 });
    expect(taken.lockTakenOverFrom).toBe(sleeper.pid);
    taken.close();
    expect(fs.existsSync(path.join(dir2, LOCK_FILE))).toBe(false);
  });

  it('takes over a stale lock: dead pid, reused pid (other start time) and garbage content', () => {
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const cases: Array<[string, string]> = [
      ['dead pid', JSON.stringify({ pid: dead })],
      ['pid reused', JSON.stringify({ pid: process.ppid, start: '1' })],
      ['garbage', 'not json'],
    ];
    for (const [name, content] of cases) {
      const dir = tmpDir('outbox');
      fs.writeFileSync(path.join(dir, LOCK_FILE), content);
      const ob = Outbox.open({ dir });
      expect(JSON.parse(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8').split('\n')[1]!).pid, name).toBe(process.pid);
      ob.close();
    }
  });

  it('names the directory when it cannot be used', () => {
    const parent = tmpDir('outbox');
    const file = path.join(parent, 'a-file');
    fs.writeFileSync(file, '');
    const dir = path.join(file, 'state');
    expect(() => Outbox.open({ dir })).toThrow(`state directory ${dir} is not usable`);
  });

  it('names the directory when it is not writable', () => {
    const dir = tmpDir('outbox');
    const outbox = path.join(compiled, 'lib/alerts/outbox.js');
    const code = `try { require(${JSON.stringify(outbox)}).Outbox.open({ dir: process.argv[1] }); process.exit(0) }
                  catch (e) { process.stdout.write(e.message + '\\n' + e.code); process.exit(2) }`;
    if (process.getuid?.() === 0) {
      // root may write anywhere: run the check as 'nobody' against a root-owned 0755 directory.
      fs.chmodSync(dir, 0o755);
      chmodTreeReadable(compiled);
      const r = spawnSync(process.execPath, ['-e', code, dir], { uid: 65534, gid: 65534, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stdout).toContain(`state directory ${dir} is not usable`);
      expect(r.stdout).toContain('EACCES');
    } else {
      fs.chmodSync(dir, 0o555);
      expect(() => Outbox.open({ dir })).toThrow(`state directory ${dir} is not usable`);
    }
  });
});

function chmodTreeReadable(dir: string): void {
  fs.chmodSync(dir, 0o755);
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) chmodTreeReadable(p);
    else fs.chmodSync(p, 0o644);
  }
}
