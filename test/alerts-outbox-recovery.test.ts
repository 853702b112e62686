// The outbox on open, on a real directory: damaged records are counted, reported and kept in
// quarantine/ (never skipped or cut silently), a full outbox drops repeats before first crossings and
// resolutions, and the format version (outbox.meta, lock) is checked before anything is touched.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LOCK_FILE, Outbox } from '../lib/alerts';
import type { OutboxDamagedEvent } from '../lib';
import { encodeLine } from '../lib/alerts/line-codec';
import { tmpDir } from './helpers/tmp';

const segmentFiles = (dir: string) =>
  fs
    .readdirSync(dir)
    .filter((n) => /^outbox-\d+\.log$/.test(n))
    .sort();

/** An outbox with `n` records over several small segments, closed. */
function filled(n: number): string {
  const dir = tmpDir('outbox-rec');
  const ob = Outbox.open({ dir, segmentMaxBytes: 300 });
  for (let i = 0; i < n; i++) ob.append({ n: String(i), pad: 'x'.repeat(40) }, { id: `a${i}` });
  ob.close();
  return dir;
}

describe('Outbox damaged records', () => {
  it('reports every damaged run (segment, offset, records), keeps its bytes in quarantine/ and still returns every good record', async () => {
    const dir = filled(12);
    const segs = segmentFiles(dir);
    expect(segs.length).toBeGreaterThan(2);
    // First segment: its second line garbled (checksum no longer matches).
    const first = path.join(dir, segs[0]!);
    const lines = fs.readFileSync(first, 'utf8').split('\n');
    const offset = Buffer.byteLength(`${lines[0]}\n`);
    const badLine = lines[1]!.replace('"n":"', '"n":"X');
    lines[1] = badLine;
    fs.writeFileSync(first, lines.join('\n'));
    const lostN = /"n":"X(\d+)"/.exec(badLine)![1];
    // Last segment: fully garbled.
    const last = path.join(dir, segs.at(-1)!);
    const garbage = Buffer.from('\u0000\u0001not a record at all\nstill not\n');
    const lastRecords = fs.readFileSync(last, 'utf8').split('\n').filter(Boolean).length;
    fs.writeFileSync(last, garbage);

    const ob = Outbox.open({ dir, segmentMaxBytes: 300 });
    const events: OutboxDamagedEvent[] = [];
    ob.on('damaged', (d) => events.push(d));
    await new Promise((r) => setImmediate(r));
    try {
      expect(ob.recovery.damaged).toEqual(events);
      expect(events).toEqual([
        expect.objectContaining({ file: first, offset, bytes: Buffer.byteLength(`${badLine}\n`), records: 1, truncated: false }),
        expect.objectContaining({ file: last, offset: 0, bytes: garbage.length, records: 2, truncated: true }),
      ]);
      expect(fs.readFileSync(events[0]!.quarantine!, 'utf8')).toBe(`${badLine}\n`);
      expect(fs.readFileSync(events[1]!.quarantine!)).toEqual(garbage);
      expect(path.dirname(events[0]!.quarantine!)).toBe(path.join(dir, 'quarantine'));
      expect(fs.statSync(last).size).toBe(0); // cut, and said so (truncated: true)
      // Every record not damaged is still pending.
      const ns = ob.pending().map((r) => r.params.n);
      expect(ns).not.toContain(lostN);
      expect(ns).toHaveLength(12 - 1 - lastRecords);
    } finally {
      ob.close();
    }
    // The next open reports the damage still in the first segment again, and keeps one copy of it.
    const again = Outbox.open({ dir, segmentMaxBytes: 300 });
    expect(again.recovery.damaged.map((d) => [d.file, d.offset])).toEqual([[first, offset]]);
    again.close();
    expect(fs.readdirSync(path.join(dir, 'quarantine'))).toHaveLength(2);
  });

  it('reports a torn ack line and a well-checksummed record of a bad shape', () => {
    const dir = filled(3);
    const seg = path.join(dir, segmentFiles(dir)[0]!);
    const size = fs.statSync(seg).size;
    fs.appendFileSync(seg, encodeLine({ s: 'not a seq', i: 1 }));
    fs.appendFileSync(path.join(dir, 'acks.log'), '1234abcd {"s":2,"r":"deliv');
    const ob = Outbox.open({ dir });
    try {
      expect(ob.recovery.damaged).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ file: path.join(dir, 'acks.log'), offset: 0, records: 1, truncated: true }),
          expect.objectContaining({ file: seg, offset: size, records: 1, truncated: false }),
        ]),
      );
      expect(ob.pending()).toHaveLength(3);
    } finally {
      ob.close();
    }
  });
});

describe('Outbox bounds', () => {
  it("drops expendable records (the CLI's repeats) before first crossings and resolutions when full", () => {
    const dir = tmpDir('outbox-rec');
    const ob = Outbox.open({ dir, maxRecords: 3 });
    const dropped: string[] = [];
    ob.on('dropped', (d) => dropped.push(d.record.id));
    ob.append({ event: 'alert' }, { id: 'alert-1' });
    ob.append({ event: 'repeat' }, { id: 'repeat-1', expendable: true });
    ob.append({ event: 'repeat' }, { id: 'repeat-2', expendable: true });
    ob.append({ event: 'resolved' }, { id: 'resolved-1' }); // full: the oldest repeat goes
    ob.append({ event: 'alert' }, { id: 'alert-2' }); // the other repeat
    expect(dropped).toEqual(['repeat-1', 'repeat-2']);
    ob.append({ event: 'alert' }, { id: 'alert-3' }); // no repeat left: the oldest record
    expect(dropped).toEqual(['repeat-1', 'repeat-2', 'alert-1']);
    expect(ob.pending().map((r) => r.id)).toEqual(['resolved-1', 'alert-2', 'alert-3']);
    ob.close();
    // The same rule on open, over a smaller bound.
    const small = Outbox.open({ dir, maxRecords: 2 });
    expect(small.pending().map((r) => r.id)).toEqual(['alert-2', 'alert-3']);
    small.close();
  });

  it('on open, keeps first crossings over the repeats written after them', () => {
    const dir = tmpDir('outbox-rec');
    const ob = Outbox.open({ dir });
    ob.append({ event: 'alert' }, { id: 'alert-1' });
    for (let i = 1; i <= 5; i++) ob.append({ event: 'repeat' }, { id: `repeat-${i}`, expendable: true });
    ob.close();
    const reopened = Outbox.open({ dir, maxRecords: 2 });
    expect(reopened.pending().map((r) => r.id)).toEqual(['alert-1', 'repeat-5']);
    reopened.close();
  });
});

describe('Outbox format version', () => {
  it('writes outbox.meta v1, and reads a 0.1.0 outbox (no meta) as v1', () => {
    const dir = filled(2);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'outbox.meta'), 'utf8'))).toEqual({ v: 1 });
    fs.rmSync(path.join(dir, 'outbox.meta'));
    const ob = Outbox.open({ dir });
    expect(ob.pending()).toHaveLength(2);
    ob.close();
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'outbox.meta'), 'utf8'))).toEqual({ v: 1 });
  });

  it('refuses an outbox of a newer format with one line naming the file, and touches nothing', () => {
    const dir = filled(2);
    const meta = path.join(dir, 'outbox.meta');
    fs.writeFileSync(meta, '{"v":2}\n');
    const seg = path.join(dir, segmentFiles(dir)[0]!);
    fs.appendFileSync(seg, 'a tail a v1 reader would cut');
    const before = fs.readFileSync(seg);
    let err: (Error & { code?: string }) | undefined;
    try {
      Outbox.open({ dir }).close();
    } catch (e) {
      err = e as Error & { code?: string };
    }
    expect(err?.code).toBe('ERR_SOCKWATCH_STATE_VERSION');
    expect(err?.message).toContain(meta);
    expect(err?.message).not.toContain('\n');
    expect(fs.readFileSync(seg)).toEqual(before);
    expect(fs.readFileSync(meta, 'utf8')).toBe('{"v":2}\n');
    expect(fs.existsSync(path.join(dir, LOCK_FILE))).toBe(false); // released
  });

  it('refuses a lock of a newer format, and never opens the outbox behind it', () => {
    const dir = filled(1);
    fs.writeFileSync(path.join(dir, LOCK_FILE), `999999\n${JSON.stringify({ v: 2, pid: 999999 })}\n`);
    expect(() => Outbox.open({ dir })).toThrow(/format v2, written by a newer sockwatch/);
  });
});
