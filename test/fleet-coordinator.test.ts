// The fleet coordinator (lib/fleet/) against a real Azurite: create-once slots per window, leased
// running locks, the records they hold, the window taken from the service's Date header, and a SAS
// that lacks the permissions. The window test runs a second Azurite under libfaketime (Debian's
// faketime package), so that the storage clock is years and hours away from this machine's: the
// blob names must follow the storage clock. Nothing is faked in this process.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_ACCOUNT, DEV_KEY, createContainerSas, keyContainerClient, startAzurite, type Azurite } from './helpers/azurite';
import { StorageSharedKeyCredential, generateBlobSASQueryParameters, SASProtocol } from '@azure/storage-blob';
import { FleetCoordinator, type FleetRecord } from '../lib/fleet/coordinator';
import { FleetGate } from '../lib/fleet/gate';
import { normalizeFleetLimits, parseWindow, windowAt } from '../lib/fleet/limits';
import { parseContainerSasUrl, type ContainerSasUrl } from '../lib/upload/sas-url';
import { UploadError } from '../lib/upload/errors';
import { awayFromWindowBoundary } from './helpers/fleet';
import { sleep } from './helpers/wait';

/** Debian's libfaketime, under /usr/lib/<multiarch triplet>/faketime/. */
const LIBFAKETIME = ['x86_64-linux-gnu', 'aarch64-linux-gnu']
  .map((triplet) => `/usr/lib/${triplet}/faketime/libfaketime.so.1`)
  .find((file) => fs.existsSync(file));
const hasFaketime = LIBFAKETIME !== undefined && spawnSync('faketime', ['--version']).status === 0;

let azurite: Azurite;
let n = 0;

beforeAll(async () => {
  azurite = await startAzurite();
});

afterAll(async () => {
  await azurite?.stop();
});

/** A fresh container and its SAS (default racwdlt). */
async function containerSas(permissions?: string): Promise<ContainerSasUrl> {
  const name = `fleet-${++n}-${process.pid}`;
  return parseContainerSasUrl(await createContainerSas(azurite.url, name, permissions ? { permissions } : {}));
}

async function blobNames(sas: ContainerSasUrl): Promise<string[]> {
  const out: string[] = [];
  for await (const b of keyContainerClient(azurite.url, sas.containerName).listBlobsFlat()) out.push(b.name);
  return out.sort();
}

async function readJson(sas: ContainerSasUrl, name: string): Promise<FleetRecord> {
  const buf = await keyContainerClient(azurite.url, sas.containerName).getBlobClient(name).downloadToBuffer();
  return JSON.parse(buf.toString('utf8')) as FleetRecord;
}

const coordinator = (sas: ContainerSasUrl, instance: string, limits: ConstructorParameters<typeof FleetCoordinator>[0]['limits']) =>
  new FleetCoordinator({ containerSas: sas, instance, limits });

describe('fleet limits: options', () => {
  it.each([
    [{}, 'options.fleet: give max, concurrent or both'],
    [{ max: 0 }, 'options.fleet.max must be an integer from 1 to 1000 (got 0)'],
    [{ concurrent: 1.5 }, 'options.fleet.concurrent must be an integer from 1 to 100 (got 1.5)'],
    [{ max: 1, windowMs: 1500 }, 'options.fleet.windowMs must be whole seconds (got 1500)'],
    [{ concurrent: 1, windowMs: 60_000 }, "options.fleet.windowMs needs options.fleet.max (the window is max's)"],
    [{ max: 1, leaseSeconds: 5 }, 'options.fleet.leaseSeconds must be an integer from 15 to 60 (got 5)'],
    [{ max: 1, prefix: '../x' }, 'options.fleet.prefix must be letters, digits'],
    [{ max: 1, maxx: 1 }, 'options.fleet: unknown option "maxx" (did you mean "max"?)'],
  ])('%j is refused', (limits, message) => {
    expect(() => normalizeFleetLimits(limits)).toThrow(message);
  });

  it('defaults: one-hour windows, 30 s leases, prefix sockwatch', () => {
    expect(normalizeFleetLimits({ max: 2 })).toEqual({
      max: 2,
      windowMs: 3_600_000,
      concurrent: undefined,
      prefix: 'sockwatch',
      leaseSeconds: 30,
    });
  });

  it('parses windows with a unit and refuses the rest', () => {
    expect([parseWindow('90s', 'w'), parseWindow('30m', 'w'), parseWindow('1h', 'w'), parseWindow('1d', 'w')]).toEqual([
      90_000, 1_800_000, 3_600_000, 86_400_000,
    ]);
    for (const bad of ['nonsense', '1', '0h', '1.5h', '-1h', '32d', '1w', ''])
      expect(() => parseWindow(bad, '--fleet-window')).toThrow(RangeError);
  });

  it('windows are epoch-aligned slices: one hour starts on the hour, UTC', () => {
    const w = windowAt(new Date('2026-12-02T01:59:59.999Z'), 3_600_000);
    expect(w).toEqual({ start: new Date('2026-12-02T01:00:00Z'), end: new Date('2026-12-02T02:00:00Z'), key: '20261202T010000Z' });
    expect(windowAt(new Date('2026-12-02T02:00:00Z'), 3_600_000).key).toBe('20261202T020000Z');
  });
});

describe('fleet coordinator with Azurite', () => {
  it('--fleet-max 1: three instances asking at once, exactly one gets the slot; the others learn who and when', async () => {
    const sas = await containerSas('rw'); // r and w are all the fleet needs
    await awayFromWindowBoundary(3_600_000, 10_000);
    const request = { kinds: ['dump'], destination: '10.0.0.5:1433', count: 130, threshold: 100 };
    const results = await Promise.all(['inst-a', 'inst-b', 'inst-c'].map((i) => coordinator(sas, i, { max: 1 }).admit(request)));
    const granted = results.filter((r) => r.granted);
    expect(granted).toHaveLength(1);
    const permit = granted[0]!.granted ? granted[0]!.permit : undefined;
    const window = windowAt(permit!.serviceTime, 3_600_000);
    expect(permit!.slot).toBe(`${window.key}/slot-0`);
    const names = await blobNames(sas);
    expect(names).toEqual([`sockwatch/fleet/${window.key}/slot-0`]);
    const record = await readJson(sas, names[0]!);
    expect(record).toMatchObject({
      v: 1,
      pid: process.pid,
      kinds: ['dump'],
      destination: '10.0.0.5:1433',
      count: 130,
      threshold: 100,
      tool: 'sockwatch',
    });
    expect(['inst-a', 'inst-b', 'inst-c']).toContain(record.instance);
    expect(record.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(JSON.stringify(record)).not.toContain(new URL(sas.revealSignedUrl()).searchParams.get('sig')!);
    for (const r of results.filter((x) => !x.granted)) {
      expect(r).toMatchObject({ granted: false, reason: 'window-full', holders: [{ instance: record.instance, time: record.time }] });
    }
    await permit!.release();
  });

  it('--fleet-concurrent 1: a second instance waits for the lease; the released slot still counts against --fleet-max', async () => {
    const sas = await containerSas();
    const limits = { max: 2, concurrent: 1, leaseSeconds: 15 };
    await awayFromWindowBoundary(3_600_000, 10_000);
    const a = coordinator(sas, 'inst-a', limits);
    const b = coordinator(sas, 'inst-b', limits);
    const c = coordinator(sas, 'inst-c', limits);
    const first = await a.admit({ kinds: ['dump'] });
    expect(first.granted).toBe(true);
    expect(first.granted && first.permit.lock).toBe('lock-0');
    const second = await b.admit({ kinds: ['trace'] });
    expect(second).toMatchObject({
      granted: false,
      reason: 'all-running',
      holders: [{ instance: 'inst-a', pid: process.pid, kinds: ['dump'] }],
    });
    const lock = await readJson(sas, 'sockwatch/fleet/locks/lock-0');
    expect(lock).toMatchObject({ instance: 'inst-a', lock: 'lock-0' });
    expect(lock.slot).toMatch(/^\d{8}T\d{6}Z\/slot-0$/);

    if (first.granted) await first.permit.release();
    const again = await b.admit({ kinds: ['trace'] });
    expect(again.granted && again.permit.slot).toMatch(/\/slot-1$/);
    if (again.granted) await again.permit.release();
    // Two collections started in this window (one per slot): a third is refused although nothing runs.
    const third = await c.admit({ kinds: ['dump'] });
    expect(third).toMatchObject({ granted: false, reason: 'window-full' });
    expect(third.granted === false && third.holders.map((h) => h.instance)).toEqual(['inst-a', 'inst-b']);
    // The refused instance took the lease and gave it back: the lock is free.
    const props = await keyContainerClient(azurite.url, sas.containerName).getBlobClient('sockwatch/fleet/locks/lock-0').getProperties();
    expect(props.leaseState).toBe('available');
  });

  it('--fleet-concurrent alone: a lock and no slot; a released lock is taken by the next instance', async () => {
    const sas = await containerSas('rw');
    const a = await coordinator(sas, 'inst-a', { concurrent: 1 }).admit({ kinds: ['trace'] });
    expect(a.granted && { slot: a.permit.slot, lock: a.permit.lock }).toEqual({ slot: undefined, lock: 'lock-0' });
    const b = coordinator(sas, 'inst-b', { concurrent: 1 });
    expect(await b.admit({ kinds: ['dump'] })).toMatchObject({ granted: false, reason: 'all-running', holders: [{ instance: 'inst-a' }] });
    if (a.granted) await a.permit.release();
    const again = await b.admit({ kinds: ['dump'] });
    expect(again.granted && again.permit.lock).toBe('lock-0');
    if (again.granted) await again.permit.release();
    expect(await blobNames(sas)).toEqual(['sockwatch/fleet/locks/lock-0']);
  });

  it("another instance's record is foreign text: the refusal stays one printable line", async () => {
    const sas = await containerSas('rw');
    await awayFromWindowBoundary(3_600_000, 10_000);
    const c = coordinator(sas, 'inst-a', { max: 1 });
    const window = windowAt(await c.serviceTime(), 3_600_000);
    const planted = JSON.stringify({
      v: 1,
      instance: 'evil\nERROR: forged line\u001b[31m',
      pid: 7,
      time: 'now',
      destination: 'x',
      count: 1,
    });
    await keyContainerClient(azurite.url, sas.containerName).getBlockBlobClient(c.slotName(window, 0)).upload(planted, planted.length);
    const lines: string[] = [];
    expect(await new FleetGate(c, { report: (text) => lines.push(text) }).admit({ kinds: ['dump'] })).toBeUndefined();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^[\x20-\x7e]+$/);
    expect(lines[0]).toContain('evil?ERROR: forged line?[31m (pid 7) collected at now (x: 1 connections)');
  });

  it('a SAS without the permissions (a stored access policy granting only r) gives one redacted line and no collection', async () => {
    const name = `fleet-policy-${process.pid}`;
    const client = keyContainerClient(azurite.url, name);
    await client.createIfNotExists();
    await client.setAccessPolicy(undefined, [
      {
        id: 'readonly',
        accessPolicy: { permissions: 'r', startsOn: new Date(Date.now() - 60_000), expiresOn: new Date(Date.now() + 3_600_000) },
      },
    ]);
    const query = generateBlobSASQueryParameters(
      { containerName: name, identifier: 'readonly', protocol: SASProtocol.HttpsAndHttp },
      new StorageSharedKeyCredential(DEV_ACCOUNT, DEV_KEY),
    ).toString();
    const sas = parseContainerSasUrl(`${client.url}?${query}`);
    expect(sas.permissions).toBeUndefined(); // nothing to check before the first request
    const err = await coordinator(sas, 'inst-a', { max: 1 })
      .admit({ kinds: ['dump'] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UploadError);
    expect((err as UploadError).statusCode).toBe(403);
    const lines: string[] = [];
    const gate = new FleetGate(coordinator(sas, 'inst-a', { max: 1 }), { report: (text) => lines.push(text) });
    expect(await gate.admit({ kinds: ['dump'] })).toBeUndefined();
    expect(await gate.admit({ kinds: ['dump'] })).toBeUndefined(); // not asked again for 30 s
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^ERROR: fleet coordination failed: fleet slot create \(sockwatch\/fleet\/\d{8}T\d{6}Z\/slot-0\) failed with HTTP 403 \w+: the SAS is wrong, expired, revoked or lacks permission \(needs r and w\) .*; not collecting \(the fleet limits fail closed\), trying again in 30 s$/,
    );
    expect(lines[0]).not.toContain(new URL(sas.revealSignedUrl()).searchParams.get('sig')!);
    expect(await blobNames(sas)).toEqual([]);
  });

  it.skipIf(!hasFaketime)(
    'windows follow the storage clock (Azurite under libfaketime, years and hours off), across a window boundary',
    async () => {
      // Azurite's clock starts at 11:59:00 on 2031-06-01 and runs 4 times as fast: it reaches the
      // 12:00 boundary about 15 s after it starts (10 s left too little for a slow start of Azurite and
      // the first admissions on a loaded machine), while this machine's clock says something else.
      const fake = await startAzurite({
        env: { LD_PRELOAD: LIBFAKETIME!, FAKETIME: '@2031-06-01 11:59:00 x4', FAKETIME_DONT_FAKE_MONOTONIC: '1' },
      });
      try {
        const sas = parseContainerSasUrl(
          await createContainerSas(fake.url, 'fleet-clock', { expiresOn: new Date('2031-06-02T00:00:00Z') }),
          { now: new Date('2031-06-01T11:00:00Z') },
        );
        const a = coordinator(sas, 'inst-a', { max: 1 });
        const before = await a.serviceTime();
        expect(before.toISOString().slice(0, 13), 'Azurite took too long to start').toBe('2031-06-01T11');
        const first = await a.admit({ kinds: ['dump'] });
        expect(first.granted && first.permit.slot).toBe('20310601T110000Z/slot-0');
        const refused = await coordinator(sas, 'inst-b', { max: 1 }).admit({ kinds: ['dump'] });
        expect(refused).toMatchObject({ granted: false, reason: 'window-full', holders: [{ instance: 'inst-a' }] });
        expect(refused.granted === false && refused.reason === 'window-full' && refused.window.end.toISOString()).toBe(
          '2031-06-01T12:00:00.000Z',
        );
        // Wait for the storage clock to pass 12:00; this machine's clock is nowhere near it.
        const deadline = Date.now() + 30_000;
        while ((await a.serviceTime()).getTime() < Date.parse('2031-06-01T12:00:00Z')) {
          expect(Date.now()).toBeLessThan(deadline);
          await sleep(250);
        }
        const next = await coordinator(sas, 'inst-b', { max: 1 }).admit({ kinds: ['dump'] });
        expect(next.granted && next.permit.slot).toBe('20310601T120000Z/slot-0');
        const names: string[] = [];
        for await (const b of keyContainerClient(fake.url, 'fleet-clock').listBlobsFlat()) names.push(b.name);
        expect(names.sort()).toEqual(['sockwatch/fleet/20310601T110000Z/slot-0', 'sockwatch/fleet/20310601T120000Z/slot-0']);
      } finally {
        await fake.stop();
      }
    },
    60_000,
  );
});
