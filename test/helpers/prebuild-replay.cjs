// Runs recorded netlink replies through lib's parseRecorded path (loadBinding + unpackRecords from
// the compiled dist/) and prints the results as JSON. test/prebuild-arm64.test.ts runs it in an
// arm64 Node under qemu-aarch64 (so it loads prebuilds/linux-arm64/sockwatch.glibc.node) and compares
// with the same cases run in the test's own x64 process; `normalize` is shared by both sides.
//
//   node prebuild-replay.cjs <cases.json>     cases: [{ name, datagrams: [hex], seq, req }]
//   node prebuild-replay.cjs --live           a live scan in this Node: what works under emulation
//   node prebuild-replay.cjs --bad-alloc      parseRecorded under an address-space limit (C++ bad_alloc)
'use strict';

/** A JSON-safe, deterministic picture of a parseRecorded result or error (elapsedNs is a time). */
function normalize(v) {
  if (typeof v === 'bigint') return `${v}n`;
  if (ArrayBuffer.isView(v)) return Array.from(v, (x) => (typeof x === 'bigint' ? `${x}n` : x));
  if (v instanceof Error) {
    const e = v;
    return { error: { name: e.name, message: e.message, code: e.code, errno: e.errno, syscall: e.syscall } };
  }
  if (Array.isArray(v)) return v.map(normalize);
  if (v !== null && typeof v === 'object') {
    const out = {};
    for (const k of Object.keys(v).sort()) if (k !== 'elapsedNs') out[k] = normalize(v[k]);
    return out;
  }
  return v;
}

/** Runs one case through a binding whose parseRecorded is lib's, with records unpacked as the sampler does. */
function runCase(binding, unpackRecords, c) {
  try {
    const out = binding.parseRecorded(
      c.datagrams.map((h) => Buffer.from(h, 'hex')),
      c.seq,
      c.req,
    );
    return normalize({ ...out, records: unpackRecords(out.records) });
  } catch (e) {
    return normalize(e);
  }
}

module.exports = { normalize, runCase };

if (require.main === module) {
  const fs = require('node:fs');
  const path = require('node:path');
  const dist = path.join(__dirname, '..', '..', 'dist');
  const native = require(path.join(dist, 'native.js'));
  const binding = native.loadBinding();
  const maps = fs.readFileSync('/proc/self/maps', 'utf8');
  const info = { arch: process.arch, node: process.version, addon: native.addonPath(), mapped: maps.includes(native.addonPath()) };
  const arg = process.argv[2];
  // Synchronous: a pipe's process.stdout.write is asynchronous, and --bad-alloc may abort right after.
  const out = (text) => fs.writeSync(1, text);
  if (arg === '--live') {
    // A listener of our own, then a live netlink dump of TCP listeners.
    const srv = require('node:net').createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = srv.address().port;
      let live;
      try {
        const s = new binding.Sampler();
        const r = s.scanSync({
          protocols: 1,
          families: 1,
          tcpStates: 1 << 10,
          udpStates: 0,
          recvThreshold: -1,
          sendThreshold: -1,
          acceptThreshold: -1,
          maxRecords: 1e6,
          flags: 1,
          aggStates: 0,
          aggTop: 0,
          aggMinTotal: 0,
        });
        s.close();
        const ports = [];
        for (let i = 0; i < r.records.count; i++) ports.push(r.records.fields[i * 16 + 3]);
        live = { ok: true, socketsSeen: r.socketsSeen, found: ports.includes(port) };
      } catch (e) {
        live = normalize(e);
      }
      srv.close();
      out(JSON.stringify({ info, live }));
    });
  } else if (arg === '--bad-alloc') {
    // Allocate the datagram first, then limit the address space so that the addon's copy of it
    // (a std::vector of the same size) cannot be allocated: operator new throws std::bad_alloc.
    // (Everything else is done before the limit: V8 and libuv need room of their own afterwards.)
    const size = 1024 * 1024 * 1024;
    const big = Buffer.alloc(size);
    const req = {
      protocols: 1,
      families: 1,
      tcpStates: 0xfff,
      udpStates: 0,
      recvThreshold: -1,
      sendThreshold: -1,
      acceptThreshold: -1,
      maxRecords: 10,
      flags: 1,
      aggStates: 0,
      aggTop: 0,
      aggMinTotal: 0,
    };
    out(JSON.stringify({ info }) + '\n');
    const vm = Number(/VmSize:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
    require('node:child_process').execFileSync('prlimit', ['--pid', String(process.pid), `--as=${vm + 256 * 1024 * 1024}`]);
    out(JSON.stringify({ calling: 'parseRecorded' }) + '\n');
    try {
      binding.parseRecorded([big], 1, req);
      out(JSON.stringify({ returned: true }) + '\n');
    } catch (e) {
      out(JSON.stringify({ thrown: normalize(e) }) + '\n');
    }
  } else {
    const { unpackRecords } = require(path.join(dist, 'sampler.js'));
    const cases = JSON.parse(fs.readFileSync(arg, 'utf8'));
    const results = cases.map((c) => runCase(binding, unpackRecords, c));
    out(JSON.stringify({ info, results }));
  }
}
