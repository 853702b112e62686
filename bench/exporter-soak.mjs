// Exporter memory over time: `sockwatch exporter` next to a socket farm, scraped every second for minutes
// with `--min-interval 0` (so every scrape is a scan), its RSS read from /proc/PID/status. Two exporters
// side by side on one farm: the built CLI in this Node, and the single executable the deploy files run
// (dist-standalone/sockwatch-linux-x64, when built). The question the deploy files raise: does it stay
// inside their memory limit (256 MiB in deploy/kubernetes and deploy/systemd), and does it stop growing?
//
//   npm run bench:exporter-soak                          # 40k sockets, 10 minutes
//   node bench/exporter-soak.mjs --sockets 10000 --minutes 2 --out /tmp/soak.md
//
// Writes its section of bench/RESULTS.md (between the exporter-soak markers). Numbers, never a pass/fail.
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { eachArg } from './args.mjs';
import { installExitHandlers, spawnTracked, startFarm } from './children.mjs';
import { planFarm } from './farm-plan.mjs';
import { writeSection } from './sections.mjs';
import { median, pointsSlope } from './stats.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.join(here, '..', 'dist', 'cli', 'main.js');
const STANDALONE = path.join(here, '..', 'dist-standalone', 'sockwatch-linux-x64');
const START = '<!-- exporter-soak:start (written by bench/exporter-soak.mjs) -->';
const END = '<!-- exporter-soak:end -->';
const LIMIT_MIB = 256; // deploy/kubernetes/exporter-daemonset.yaml limits.memory, deploy/systemd MemoryMax

function options(argv) {
  const o = { sockets: 40_000, minutes: 10, out: path.join(here, 'RESULTS.md') };
  eachArg(argv, (a, value) => {
    if (a === '--sockets') o.sockets = Number(value());
    else if (a === '--minutes') o.minutes = Number(value());
    else if (a === '--out') o.out = value();
    else throw new RangeError(`unknown argument ${a}`);
  });
  if (!(o.sockets > 0) || !(o.minutes > 0)) throw new RangeError('--sockets and --minutes must be positive');
  return o;
}

/** VmRSS, its anonymous part (RssAnon) and VmHWM of `pid` in KiB. */
function memory(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
  return { rss: kib('VmRSS'), anon: kib('RssAnon'), hwm: kib('VmHWM') };
}

function scrape(url) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    http
      .get(url, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => {
          const heap = Number(/^nodejs_heap_size_used_bytes (\d+)/m.exec(body)?.[1]);
          resolve({ status: res.statusCode, bytes: Buffer.byteLength(body), ms: performance.now() - t0, heapKiB: heap / 1024 });
        });
      })
      .on('error', reject);
  });
}

const mib = (kib) => `${(kib / 1024).toFixed(1)} MiB`;

/** Starts `exporter` with `argv` and resolves with its /metrics URL. */
async function startExporter(label, file, argv) {
  const child = spawnTracked(file, [...argv, 'exporter', '--listen', '127.0.0.1:0', '--min-interval', '0']);
  const url = await new Promise((resolve, reject) => {
    let text = '';
    const look = (d) => {
      text += d;
      const m = /serving (http:\/\/\S+\/metrics)/.exec(text);
      if (m) resolve(m[1]);
    };
    child.stdout.on('data', look);
    child.stderr.on('data', look);
    child.once('exit', (code) => reject(new Error(`${label} exited ${code}: ${text}`)));
  });
  return { label, child, url, samples: [], anon: [], heap: [], scrapes: [], failed: 0, hwm: 0 };
}

async function main() {
  const o = options(process.argv.slice(2));
  installExitHandlers();
  const farm = await startFarm(planFarm({ sockets: o.sockets, offenders: 10 }));
  const seen = farm.children.reduce((a, c) => a + c.sockets, 0);
  process.stdout.write(`farm ready: ${seen} sockets\n`);
  const runners = [await startExporter(`node dist/cli/main.js (Node ${process.version})`, process.execPath, [CLI])];
  if (existsSync(STANDALONE)) runners.push(await startExporter('dist-standalone/sockwatch-linux-x64 (single executable)', STANDALONE, []));
  const t0 = performance.now();
  const endAt = t0 + o.minutes * 60_000;
  try {
    for (let n = 1; performance.now() < endAt; n++) {
      const tick = performance.now();
      for (const r of runners) {
        try {
          const got = await scrape(r.url);
          if (got.status === 200) {
            r.scrapes.push(got);
            if (Number.isFinite(got.heapKiB)) r.heap.push([(performance.now() - t0) / 60_000, got.heapKiB]);
          } else r.failed++;
        } catch {
          r.failed++;
        }
        const m = memory(r.child.pid);
        r.samples.push([(performance.now() - t0) / 60_000, m.rss]);
        r.anon.push([(performance.now() - t0) / 60_000, m.anon]);
      }
      if (n % 60 === 0) process.stdout.write(`${n} s: ${runners.map((r) => `${mib(r.samples.at(-1)[1])}`).join(', ')}\n`);
      await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (performance.now() - tick))));
    }
  } finally {
    for (const r of runners) {
      r.hwm = memory(r.child.pid).hwm;
      r.child.kill('SIGTERM');
    }
    await farm.stop();
  }
  const rows = runners.map((r) => {
    const firstMinute = r.samples.filter(([t]) => t < 1).map(([, v]) => v);
    const lastMinute = r.samples.filter(([t]) => t >= o.minutes - 1).map(([, v]) => v);
    const secondHalf = r.samples.filter(([t]) => t >= o.minutes / 2);
    const sl = pointsSlope(secondHalf);
    const signed = (v) => `${v >= 0 ? '+' : '−'}${Math.abs(v).toFixed(0)} KiB/min`;
    /** first → last minute (p50 each), and the slope over the second half */
    const course = (points) =>
      points.length
        ? `${mib(median(points.filter(([t]) => t < 1).map(([, v]) => v)))} → ${mib(median(points.filter(([t]) => t >= o.minutes - 1).map(([, v]) => v)))}, ${signed(pointsSlope(points.filter(([t]) => t >= o.minutes / 2)))}`
        : '–';
    return (
      `| ${r.label} | ${r.scrapes.length} (${r.failed}) | ${median(r.scrapes.map((x) => x.ms)).toFixed(1)} ms | ` +
      `${(median(r.scrapes.map((x) => x.bytes)) / 1024).toFixed(1)} KiB | ${mib(median(firstMinute))} | ${mib(median(lastMinute))} | ` +
      `${mib(r.hwm)} | ${signed(sl)} | ${course(r.anon)} | ${course(r.heap)} | ${((r.hwm / 1024 / LIMIT_MIB) * 100).toFixed(0)}% |`
    );
  });
  const env = `${new Date().toISOString().slice(0, 10)} · Linux ${os.release()} · ${os.cpus()[0]?.model.split(' ').slice(0, 2).join(' ')} × ${os.cpus().length} · load average at the end ${os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`;
  const md = [
    '## Exporter memory over time',
    '',
    `${env} · \`node bench/exporter-soak.mjs --sockets ${o.sockets} --minutes ${o.minutes}\``,
    '',
    `\`sockwatch exporter --min-interval 0\` next to a farm of ${seen.toLocaleString('en-US')} sockets, each exporter ` +
      `scraped once a second for ${o.minutes} minutes (every scrape a scan; the exporters side by side, scraped in turn); ` +
      `RSS from /proc/PID/status after each scrape, the V8 heap from the scrape itself (\`nodejs_heap_size_used_bytes\`). ` +
      `*Second half*: least-squares slope over the run's second half. RSS counts the pages of the executable (and libraries) read from ` +
      `their files as they are first run (RssFile, which the kernel can drop and read again: the single executable is 115 MiB); ` +
      `*anonymous* memory (RssAnon: heaps, stacks) is what the kernel cannot drop. ` +
      `The deploy files limit memory to ${LIMIT_MIB} MiB.`,
    '',
    '| Exporter | Scrapes (failed) | Scrape p50 | Exposition | RSS first minute (p50) | RSS last minute (p50) | RSS peak (VmHWM) | RSS second half | Anonymous (RssAnon): first → last minute, second half | V8 heap used: first → last minute, second half | Peak / limit |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
  writeSection(o.out, START, END, md);
  process.stdout.write(`${md}\n`);
}

await main();
