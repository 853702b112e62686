// Pure units of the .NET diagnostics client: byte layouts, HRESULT decoding, estimates, names.
// Expected bytes are written out by hand (from the IPC spec and a captured request), not produced by
// the code under test.

import { describe, expect, it } from 'vitest';
import { encodeMessage, Commands, PayloadReader, PayloadWriter, decodeHeader } from '../lib/dotnet/wire';
import { DiagnosticsIpcError, describeHresult, formatHresult } from '../lib/dotnet/hresult';
import { checkReply } from '../lib/dotnet/ipc';
import { encodeCollectTracing2, formatProviderArguments, collectTrace, DEFAULT_TRACE_PROVIDERS } from '../lib/dotnet/trace';
import { encodeDumpPayload, writeDump } from '../lib/dotnet/dump';
import { parseDumpType } from '../lib/dotnet/dump-types';
import { parseProcessInfo } from '../lib/dotnet/process-info';
import {
  footprintFromMaps,
  estimateDumpBytes,
  ensureDiskSpace,
  InsufficientDiskSpaceError,
  DUMP_SPACE_MARGIN_BYTES,
} from '../lib/dotnet/dump-space';
import { dumpFileName, traceFileName } from '../lib/dotnet/file-names';
import { nsPidFromStatus } from '../lib/dotnet/discovery';
import { startTimeFromStat } from '../lib/base/proc';

const hex = (s: string) => Buffer.from(s.replace(/[\s|]/g, ''), 'hex');
/** UTF-16LE hex of an ASCII string, written out per character. */
const utf16Hex = (s: string) => [...s].map((c) => c.charCodeAt(0).toString(16).padStart(2, '0') + '00').join('');
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const str = (s: string) => Buffer.concat([u32(s.length + 1), Buffer.from(utf16Hex(s + '\0'), 'hex')]);
const MAGIC_HEX = '44 4f 54 4e 45 54 5f 49 50 43 5f 56 31 00';

describe('IPC framing', () => {
  it('encodes the CollectTracing2 request captured with socat in runtime#42382, byte for byte', () => {
    const message = encodeMessage(
      Commands.CollectTracing2,
      encodeCollectTracing2({
        bufferSizeMB: 256,
        requestRundown: true,
        providers: [{ name: 'Microsoft-Windows-DotNETRuntime', keywords: 0xffffffffffffffbfn, level: 5 }],
      }),
    );
    const expected = hex(
      `${MAGIC_HEX} | 77 00 | 02 | 03 | 00 00` +
        '00 01 00 00 | 01 00 00 00 | 01 | 01 00 00 00 | bf ff ff ff ff ff ff ff | 05 00 00 00 | 20 00 00 00' +
        utf16Hex('Microsoft-Windows-DotNETRuntime\0') +
        '01 00 00 00 00 00',
    );
    expect(message.length).toBe(119);
    expect(message.equals(expected)).toBe(true);
  });

  it('encodes a payload-less ProcessInfo3 request as a bare 20-byte header', () => {
    expect(encodeMessage(Commands.ProcessInfo3).equals(hex(`${MAGIC_HEX} 14 00 04 08 00 00`))).toBe(true);
  });

  it('rejects a payload larger than the u16 size field allows', () => {
    expect(() => encodeMessage(Commands.GenerateCoreDump3, Buffer.alloc(65516))).toThrow(RangeError);
  });

  it('encodes null strings as length 0 and reads length-0 strings as empty', () => {
    expect(new PayloadWriter().string(null).toBuffer().equals(u32(0))).toBe(true);
    expect(new PayloadReader(u32(0), 'x').string()).toBe('');
  });

  it('decodes headers and rejects bad magic and short sizes', () => {
    expect(decodeHeader(hex(`${MAGIC_HEX} 18 00 ff 00 00 00`), 'c')).toEqual({ size: 24, commandSet: 0xff, commandId: 0 });
    expect(() => decodeHeader(hex(`${MAGIC_HEX.replace('31', '32')} 18 00 ff 00 00 00`), 'c')).toThrow(/DOTNET_IPC_V1/);
    expect(() => decodeHeader(hex(`${MAGIC_HEX} 10 00 ff 00 00 00`), 'c')).toThrow(/less than the header/);
  });

  it('names the field and command when a reply is truncated', () => {
    const r = new PayloadReader(Buffer.concat([u32(10), Buffer.alloc(4)]), 'Process.ProcessInfo2');
    expect(() => r.string('command line')).toThrow(/Process\.ProcessInfo2: reply truncated reading command line/);
  });

  it('formats a runtime cookie like .NET prints a Guid (first three groups little-endian)', () => {
    const r = new PayloadReader(hex('00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f'), 'x');
    expect(r.guid()).toBe('03020100-0504-0706-0809-0a0b0c0d0e0f');
  });
});

describe('HRESULT decoding', () => {
  it('names the diagnostics server codes, whether read signed or unsigned', () => {
    expect(describeHresult(0x80131385).code).toBe('UNKNOWN_COMMAND');
    expect(describeHresult(-2146233467).code).toBe('UNKNOWN_COMMAND');
    expect(describeHresult(0x80131384).code).toBe('BAD_ENCODING');
    expect(describeHresult(0x80004005).code).toBe('E_FAIL');
    expect(describeHresult(0x8013135b).code).toBe('NOT_YET_AVAILABLE');
  });

  it('decodes Win32-facility codes and keeps unknown ones recognisable', () => {
    expect(describeHresult(0x80070070)).toEqual({ code: 'WIN32_112', meaning: 'Win32 error 112' });
    expect(describeHresult(0x12345678).code).toBe('HRESULT_12345678');
    expect(formatHresult(-2147467259)).toBe('0x80004005');
  });

  it('turns an Error reply into a DiagnosticsIpcError with hresult, code and the runtime message', () => {
    const reply = {
      header: { size: 0, commandSet: 0xff, commandId: 0xff },
      payload: Buffer.concat([hex('05 40 00 80'), str('Problem suspending threads')]),
    };
    let caught: unknown;
    try {
      checkReply(Commands.GenerateCoreDump3, reply);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(DiagnosticsIpcError);
    const e = caught as DiagnosticsIpcError;
    expect(e.hresult).toBe(0x80004005);
    expect(e.code).toBe('ERR_SOCKWATCH_DIAGNOSTICS');
    expect(e.hresultName).toBe('E_FAIL');
    expect(e.legacyCode).toBe('E_FAIL');
    expect(e.detail).toBe('Problem suspending threads');
    expect(e.command).toBe('Dump.GenerateCoreDump3');
    expect(e.message).toBe('Dump.GenerateCoreDump3 failed: the operation failed (E_FAIL, HRESULT 0x80004005): Problem suspending threads');
  });

  it('returns the payload of an OK reply and rejects replies outside the server command set', () => {
    expect(checkReply(Commands.ProcessInfo, { header: { size: 24, commandSet: 0xff, commandId: 0 }, payload: u32(0) }).equals(u32(0))).toBe(
      true,
    );
    expect(() =>
      checkReply(Commands.ProcessInfo, { header: { size: 20, commandSet: 0x04, commandId: 0 }, payload: Buffer.alloc(0) }),
    ).toThrow(/command set 0x4/);
  });
});

describe('ProcessInfo payloads', () => {
  const common = Buffer.concat([
    hex('39 30 00 00 00 00 00 00'), // pid 12345
    hex('00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f'),
    str('/app/api /app/api.dll'),
    str('Linux'),
    str('x64'),
  ]);

  it('parses v1 (no entrypoint or version)', () => {
    const info = parseProcessInfo(common, 1);
    expect(info).toMatchObject({
      pid: 12345,
      runtimeCookie: '03020100-0504-0706-0809-0a0b0c0d0e0f',
      commandLine: '/app/api /app/api.dll',
      os: 'Linux',
      arch: 'x64',
      clrProductVersion: '',
    });
  });

  it('parses v2 and v3 (layout version 1 adds the runtime identifier)', () => {
    const v2 = Buffer.concat([common, str('api'), str('8.0.11')]);
    expect(parseProcessInfo(v2, 2)).toMatchObject({ entrypointAssembly: 'api', clrProductVersion: '8.0.11', command: 'ProcessInfo2' });
    const v3 = Buffer.concat([u32(1), v2, str('linux-x64')]);
    expect(parseProcessInfo(v3, 3)).toMatchObject({ pid: 12345, clrProductVersion: '8.0.11', runtimeIdentifier: 'linux-x64' });
    const v3old = Buffer.concat([u32(0), v2]);
    expect(parseProcessInfo(v3old, 3).runtimeIdentifier).toBeUndefined();
  });
});

describe('dump requests', () => {
  it('encodes v3 as path, type, flags', () => {
    expect(encodeDumpPayload('/d/x', 'full', 0x4, 3).equals(Buffer.concat([str('/d/x'), u32(4), u32(4)]))).toBe(true);
  });

  it('encodes v1 with a 0/1 diagnostics field instead of flags', () => {
    expect(encodeDumpPayload('/d/x', 'withheap', 0x1 | 0x4, 1).equals(Buffer.concat([str('/d/x'), u32(2), u32(1)]))).toBe(true);
    expect(encodeDumpPayload('/d/x', 'triage', 0x4, 1).equals(Buffer.concat([str('/d/x'), u32(3), u32(0)]))).toBe(true);
  });

  it('accepts dump type names in any case and rejects others, naming the option', () => {
    expect(parseDumpType('WithHeap')).toBe('withheap');
    expect(parseDumpType('FULL')).toBe('full');
    expect(() => parseDumpType('huge')).toThrow(/type must be one of Normal, WithHeap, Triage, Full; got "huge"/);
  });

  it('validates writeDump options before touching the target', async () => {
    const target = { pid: process.pid, socketPath: '/nonexistent/socket' };
    await expect(writeDump(target, '/tmp/x.dmp', { type: 'huge' })).rejects.toThrow(RangeError);
    await expect(writeDump(target, '', {})).rejects.toThrow(/dumpPath must be a non-empty string/);
    await expect(writeDump(target, '/tmp/x.dmp', { timeoutMs: -1 })).rejects.toThrow(/timeoutMs must be a number >= 0/);
  });
});

describe('dump size estimate and disk-space check', () => {
  const maps = [
    '55d0c0000000-55d0c0100000 r--p 00000000 fd:00 123  /usr/share/dotnet/dotnet', // 1 MiB file
    '7f0000000000-7f0000400000 rw-p 00000000 00:00 0 ', // 4 MiB anon
    '7f0000400000-7f4000400000 ---p 00000000 00:00 0 ', // 256 GiB PROT_NONE reservation: skipped
    '7f5000000000-7f5000200000 r-xp 00000000 00:01 77   /memfd:doublemapper (deleted)', // 2 MiB, counts as anon
    '7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0    [stack]',
    'ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]',
    '7ffd00100000-7ffd00104000 r--p 00000000 00:00 0    [vvar]',
  ].join('\n');

  it('sums readable mappings, anonymous and file-backed apart, skipping reservations and kernel pages', () => {
    const fp = footprintFromMaps(maps);
    expect(fp.fileBytes).toBe(1 << 20);
    expect(fp.anonymousBytes).toBe((4 << 20) + (2 << 20) + 0x21000);
  });

  it('orders the estimates full > withheap > normal', () => {
    const fp = { anonymousBytes: 2000 << 20, fileBytes: 100 << 20, source: 'maps' as const };
    const full = estimateDumpBytes(fp, 'full');
    const heap = estimateDumpBytes(fp, 'withheap');
    const mini = estimateDumpBytes(fp, 'normal');
    expect(full).toBeGreaterThan(heap);
    expect(heap).toBeGreaterThan(mini);
    expect(full).toBeGreaterThanOrEqual(2100 << 20);
    expect(mini).toBe(200 << 20);
  });

  it('refuses with the needed and free amounts when the destination is too small', async () => {
    const statfs = async () => ({ availableBytes: 100 * 1024 * 1024 });
    const err = await ensureDiskSpace('/data', 200 * 1024 * 1024, 'a full dump of process 42', statfs).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InsufficientDiskSpaceError);
    const e = err as InsufficientDiskSpaceError;
    expect(e.code).toBe('ERR_SOCKWATCH_NO_DISK_SPACE'); // not an OS failure: the check ran before writing
    expect(e.legacyCode).toBe('ENOSPC');
    expect(e.requiredBytes).toBe(200 * 1024 * 1024 + DUMP_SPACE_MARGIN_BYTES);
    expect(e.message).toBe(
      'not enough disk space for a full dump of process 42 in /data: needs about 264.0 MiB (estimate plus 64.0 MiB margin), 100.0 MiB free',
    );
    await expect(ensureDiskSpace('/data', 10 * 1024 * 1024, 'x', statfs)).resolves.toEqual({
      requiredBytes: 10 * 1024 * 1024 + DUMP_SPACE_MARGIN_BYTES,
      availableBytes: 100 * 1024 * 1024,
    });
  });
});

describe('trace requests', () => {
  it('quotes provider argument keys and values holding ; or =', () => {
    expect(formatProviderArguments({ EventCounterIntervalSec: '1', FilterSpecs: 'a=b;c' })).toBe(
      'EventCounterIntervalSec=1;FilterSpecs="a=b;c"',
    );
    expect(formatProviderArguments(undefined)).toBe('');
  });

  it('ships the cpu-sampling pair and the System.Net sources with 1 s counters', () => {
    const byName = new Map(DEFAULT_TRACE_PROVIDERS.map((p) => [p.name, p]));
    expect(byName.get('Microsoft-DotNETCore-SampleProfiler')).toMatchObject({ keywords: 0xf00000000000n, level: 4 });
    expect(byName.get('Microsoft-Windows-DotNETRuntime')).toMatchObject({ keywords: 0x14c14fccbdn, level: 4 });
    for (const name of ['System.Net.Http', 'System.Net.Sockets', 'System.Net.NameResolution', 'System.Net.Security']) {
      expect(byName.get(name)).toMatchObject({ level: 4, arguments: 'EventCounterIntervalSec=1' });
    }
  });

  it('validates options before connecting, naming the option', async () => {
    const target = { pid: process.pid, socketPath: '/nonexistent/socket' };
    await expect(collectTrace(target, '/tmp/t.nettrace', { durationMs: 0 })).rejects.toThrow(/durationMs must be a positive number/);
    await expect(collectTrace(target, '/tmp/t.nettrace', { durationMs: 10, bufferSizeMB: 2048 })).rejects.toThrow(
      /bufferSizeMB must be an integer 1..1024/,
    );
    await expect(
      collectTrace(target, '/tmp/t.nettrace', { durationMs: 10, providers: [{ name: 'x', keywords: 1n, level: 9 }] }),
    ).rejects.toThrow(/providers\[0\]\.level/);
    await expect(collectTrace(target, '/tmp/t.nettrace', { durationMs: 10, signal: AbortSignal.abort() })).rejects.toThrow(/aborted/);
  });
});

describe('file names and /proc parsing', () => {
  const when = new Date(Date.UTC(2024, 0, 2, 3, 4, 5));

  it('names artifacts like the original script, in UTC, with a file-safe instance', () => {
    expect(dumpFileName('RD0003FF1A2B', when)).toBe('dump_RD0003FF1A2B_20240102_030405.dmp');
    expect(traceFileName('RD0003FF1A2B', when)).toBe('trace_RD0003FF1A2B_20240102_030405.nettrace');
    expect(dumpFileName('web/01 x', when)).toBe('dump_web_01_x_20240102_030405.dmp');
    expect(traceFileName('', when)).toBe('trace_unknown_20240102_030405.nettrace');
  });

  it('takes the last NSpid value and field 22 of stat even when comm holds ") "', () => {
    expect(nsPidFromStatus('Name:\tx\nNSpid:\t8921\t1\n', 8921)).toBe(1);
    expect(nsPidFromStatus('Name:\tx\n', 77)).toBe(77);
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3)); // fields 3.. ; field 22 is index 19
    expect(startTimeFromStat(`123 (a) b) ${fields.join(' ')}`)).toBe('22');
  });
});
