// What each scenario kind does in the measuring process. prepare(row, ctx) returns
//   { call, sync, perCall, spawns, describe(lastResult), close() }
// where `call` is one timed operation (a scan, a spawned command, a batch of lookups), perCall is
// how many operations one call performs (lookups are timed in batches), and spawns says the work
// happens in child processes (so this process's CPU time does not measure it).
// A kind throws SkipError when what it needs is missing (the addon, a command).
import { execFile } from 'node:child_process';
import { accessSync, closeSync, constants, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { emptyCounts, parseProcNet, parseSs, parseUniqCounts } from './parsers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
export const DIST_INDEX = path.join(here, '..', 'dist', 'index.js');

export class SkipError extends Error {}

/**
 * The compiled library plus the few internals the harness needs beyond the public API (the request
 * the floor must send, alert ids, delivery defaults), or a SkipError saying why it cannot be used.
 */
export function requireLibrary() {
  const dist = path.dirname(DIST_INDEX);
  return {
    ...require(DIST_INDEX),
    compileSampleOptions: require(path.join(dist, 'sampler.js')).compileSampleOptions,
    alertId: require(path.join(dist, 'queues', 'alert-params.js')).alertId,
    DELIVERY_DEFAULTS: require(path.join(dist, 'alerts', 'delivery.js')).DELIVERY_DEFAULTS,
  };
}

/** requireLibrary(), checked to load the addon too. */
export function loadLibrary() {
  let lib;
  try {
    lib = requireLibrary();
  } catch (err) {
    throw new SkipError(`dist/index.js not loadable (run npm run build): ${err.message.split('\n')[0]}`);
  }
  try {
    const s = new lib.Sampler();
    s.close();
  } catch (err) {
    throw new SkipError(`native addon not loadable (build/Release or prebuilds/linux-x64): ${err.message.split('\n')[0]}`);
  }
  return lib;
}

function summarizeScan(r) {
  return {
    socketsSeen: r.socketsSeen,
    records: r.records.length,
    offendersTotal: r.offendersTotal,
    aggregates: r.aggregates.length,
    aggregatedSockets: r.aggregates.reduce((n, a) => n + a.total, 0),
    bytesReceived: r.bytesReceived,
    recvCalls: r.recvCalls,
    nativeMs: r.elapsedNs / 1e6,
  };
}

function addonScan(row, sync) {
  const { Sampler } = loadLibrary();
  const sampler = new Sampler();
  const options = row.options; // validated and compiled on every call (the library keeps no cache)
  return {
    call: sync ? () => sampler.sampleSync(options) : () => sampler.sample(options),
    sync,
    perCall: 1,
    describe: summarizeScan,
    close: () => sampler.close(),
  };
}

const LOOKUPS_PER_CALL = 100;

function addonLookup(row, ctx) {
  const { Sampler } = loadLibrary();
  const sampler = new Sampler();
  const target = ctx.farm?.sample?.client;
  if (!target) throw new SkipError('the farm reported no sample connection');
  const first = sampler.lookupSync({ protocol: 'tcp', ...target });
  if (!first) throw new SkipError(`lookup found no socket ${target.local} → ${target.remote}`);
  const options = { protocol: 'tcp', local: target.local, remote: target.remote, cookie: first.cookie };
  return {
    call: () => {
      let found = null;
      for (let i = 0; i < LOOKUPS_PER_CALL; i++) found = sampler.lookupSync(options);
      return found;
    },
    sync: true,
    perCall: LOOKUPS_PER_CALL,
    describe: (r) => ({ found: r !== null, records: r ? 1 : 0, socketsSeen: r ? 1 : 0 }),
    close: () => sampler.close(),
  };
}

function run(file, args, encoding = 'latin1') {
  return new Promise((resolve, reject) => {
    execFile(file, args, { encoding, maxBuffer: 1 << 30 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} ${args.join(' ')}: ${err.message} ${String(stderr).slice(0, 200)}`));
      else resolve(stdout);
    });
  });
}

function commandExists(name) {
  return ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => {
    try {
      accessSync(path.join(d, name), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

// --- ss -tuan, spawned; output parsed on its bytes (parsers.mjs) --------------------------------

function ssScan(row) {
  if (!commandExists('ss')) throw new SkipError('ss (iproute2) is not installed');
  return {
    call: async () => parseSs(await run('ss', row.args, 'buffer'), row.threshold),
    sync: false,
    spawns: true,
    perCall: 1,
    describe: (r) => ({ socketsSeen: r.sockets, records: r.offenders.length, offendersTotal: r.offenders.length }),
  };
}

// --- /proc/net/{tcp,tcp6,udp,udp6}: read into one reused buffer, parsed on its bytes -----------

const PROC_FILES = ['/proc/net/tcp', '/proc/net/tcp6', '/proc/net/udp', '/proc/net/udp6'];

/** Reads a whole /proc file (size unknown: st_size is 0) into a reused, growing buffer. */
function makeProcReader() {
  let buf = Buffer.allocUnsafe(1 << 20);
  return (file) => {
    const fd = openSync(file, 'r');
    try {
      let len = 0;
      for (;;) {
        if (len === buf.length) {
          const bigger = Buffer.allocUnsafe(buf.length * 2);
          buf.copy(bigger, 0, 0, len);
          buf = bigger;
        }
        const n = readSync(fd, buf, len, buf.length - len, null);
        if (n === 0) break;
        len += n;
      }
      return { buf, len };
    } finally {
      closeSync(fd);
    }
  };
}

function procScan(row) {
  const read = makeProcReader();
  return {
    call: () => {
      const out = emptyCounts();
      for (const f of PROC_FILES) {
        const { buf, len } = read(f);
        parseProcNet(buf, len, row.threshold, out);
      }
      return out;
    },
    sync: true,
    perCall: 1,
    describe: (r) => ({ socketsSeen: r.sockets, records: r.offenders.length, offendersTotal: r.offenders.length }),
  };
}

// --- shell pipelines (netstat | awk | sort | uniq -c) ------------------------------------------

function pipeline(row) {
  for (const cmd of row.needs ?? []) if (!commandExists(cmd)) throw new SkipError(`${cmd} is not installed`);
  return {
    call: async () => parseUniqCounts(await run('/bin/sh', ['-c', row.command])),
    sync: false,
    spawns: true,
    perCall: 1,
    describe: (r) => ({ aggregates: r.keys, aggregatedSockets: r.total }),
  };
}

export const KINDS = {
  'addon-sync': (row) => addonScan(row, true),
  'addon-async': (row) => addonScan(row, false),
  lookup: addonLookup,
  ss: ssScan,
  proc: procScan,
  pipeline,
};
