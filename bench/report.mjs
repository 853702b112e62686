// Environment facts, target verdicts and the Markdown of bench/RESULTS.md.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { evaluateQueueTarget, QUEUE_TARGET_KINDS, queueMissText, queueWatchSection } from './queue-report.mjs';
import { median, slope } from './stats.mjs';

function firstLine(file, args) {
  try {
    return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
      .split('\n')[0]
      .trim();
  } catch {
    return 'not available';
  }
}

export function environment() {
  let cpu = 'unknown';
  try {
    cpu = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpu;
  } catch {
    // not Linux
  }
  return {
    kernel: os.release(),
    cpu,
    cores: os.cpus().length,
    node: process.version,
    date: new Date().toISOString(),
    ss: firstLine('ss', ['-V']),
    netstat: firstLine('netstat', ['--version']),
    cc: firstLine('cc', ['--version']),
    loadavg: os
      .loadavg()
      .map((v) => v.toFixed(2))
      .join(' '),
  };
}

// --- formatting -------------------------------------------------------------------------------

export function sizeLabel(n) {
  return n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n);
}

function fmtMs(ms) {
  if (!Number.isFinite(ms)) return '–';
  return ms >= 100 ? `${ms.toFixed(0)} ms` : ms >= 10 ? `${ms.toFixed(1)} ms` : `${ms.toFixed(2)} ms`;
}

function fmtUs(ms) {
  return Number.isFinite(ms) ? `${(ms * 1000).toFixed(1)} µs` : '–';
}

function fmtBytes(b) {
  if (b === null || b === undefined || !Number.isFinite(b)) return '–';
  if (b >= 1 << 20) return `${(b / (1 << 20)).toFixed(1)} MiB`;
  if (b >= 10 * 1024) return `${(b / 1024).toFixed(0)} KiB`;
  return `${Math.round(b)} B`;
}

function fmtX(v) {
  return Number.isFinite(v) ? `${v.toFixed(2)}×` : '–';
}

/** Time of one operation in the row's own unit. */
export function fmtTime(row, ms) {
  return row.unit === 'lookup' ? fmtUs(ms) : fmtMs(ms);
}

// --- targets ----------------------------------------------------------------------------------

function measured(sizeResult, id) {
  const r = sizeResult.rows[id];
  return r && !r.skipped && Number.isFinite(r.medianMs) ? r : undefined;
}

/**
 * a / b, paired by round: the median of a's round median over b's in the same round. Rounds run
 * the rows one after another, so a burst of load from other processes hits both sides of a pair.
 */
export function pairedRatio(a, b, key = 'roundMedians') {
  const n = Math.min(a[key]?.length ?? 0, b[key]?.length ?? 0);
  if (n === 0) return key === 'roundMedians' ? a.medianMs / b.medianMs : NaN;
  const ratios = [];
  for (let i = 0; i < n; i++) ratios.push(a[key][i] / b[key][i]);
  return median(ratios);
}

/** The same ratio on process CPU time (NaN where a side has none, e.g. spawned commands). */
export function pairedCpuRatio(a, b) {
  return pairedRatio(a, b, 'cpuRoundMedians');
}

function evaluateAtSize(t, s) {
  if (QUEUE_TARGET_KINDS.has(t.kind)) return evaluateQueueTarget(t, s);
  const row = measured(s, t.row);
  if (t.kind === 'ratio') {
    const over = measured(s, t.over);
    if (!row || !over) return undefined;
    const v = pairedRatio(row, over);
    const vMin = row.minMs / over.minMs;
    return {
      value: v,
      text: fmtX(v),
      minText: fmtX(vMin),
      cpu: pairedCpuRatio(row, over),
      ok: t.max === undefined ? undefined : v <= t.max,
    };
  }
  if (t.kind === 'speedup') {
    const slower = measured(s, t.slower);
    if (!row || !slower) return undefined;
    const v = pairedRatio(slower, row);
    const vMin = slower.minMs / row.minMs;
    const bound = t.bound ? measured(s, t.bound) : undefined;
    return {
      value: v,
      text: `${v.toFixed(1)}× faster`,
      minText: `${vMin.toFixed(1)}×`,
      bound: bound ? pairedRatio(slower, bound) : undefined,
      cpu: pairedCpuRatio(slower, row),
      ok: t.min === undefined ? undefined : v >= t.min,
    };
  }
  if (t.kind === 'max-us') {
    if (!row) return undefined;
    const v = row.medianMs * 1000;
    return { value: v, text: `${v.toFixed(1)} µs`, minText: `${(row.minMs * 1000).toFixed(1)} µs`, ok: v <= t.max };
  }
  return undefined;
}

function missText(t, size, r) {
  if (QUEUE_TARGET_KINDS.has(t.kind)) return queueMissText(t, size, r);
  const cpu = Number.isFinite(r.cpu) ? `; CPU-time ratio ${r.cpu.toFixed(2)}×` : '';
  if (t.kind === 'ratio')
    return `${r.value.toFixed(3)}× at ${sizeLabel(size)}: ${((r.value / t.max - 1) * 100).toFixed(1)}% over the ${t.max}× limit (fastest calls: ${r.minText}${cpu})`;
  if (t.kind === 'speedup') {
    const bound = r.bound === undefined ? '' : `; the ${t.bound} row itself is ${r.bound.toFixed(2)}× faster than ${t.slower} here`;
    return `${r.value.toFixed(2)}× at ${sizeLabel(size)}: ${((1 - r.value / t.min) * 100).toFixed(1)}% short of ${t.min}× (fastest calls: ${r.minText}${cpu}${bound})`;
  }
  if (t.kind === 'max-us')
    return `${r.text} at ${sizeLabel(size)}: ${(r.value - t.max).toFixed(1)} µs over ${t.max} µs (fastest: ${r.minText})`;
  return `${r.text} at ${sizeLabel(size)}`;
}

function evaluateHeapFlat(t, sizes) {
  const lines = [];
  let ok = true;
  let any = false;
  for (const id of t.rows) {
    const pts = sizes
      .map((s) => ({ n: s.hostSockets, b: measured(s, id)?.heapBytes, size: s.size }))
      .filter((p) => Number.isFinite(p.b) && Number.isFinite(p.n));
    if (pts.length < 2) continue;
    any = true;
    const bytes = pts.map((p) => p.b);
    const spread = Math.max(...bytes) - Math.min(...bytes);
    const perK = slope(
      pts.map((p) => p.n / 1000),
      bytes,
    );
    const rowOk = spread <= t.maxSpreadBytes;
    ok &&= rowOk;
    lines.push(
      `${id}: ${pts.map((p) => `${fmtBytes(p.b)} @ ${sizeLabel(p.size)}`).join(', ')} — spread ${fmtBytes(spread)}, slope ${perK.toFixed(1)} B per 1k sockets ${rowOk ? '✓' : '✗'}`,
    );
  }
  if (!any) return { verdict: 'n/a', lines: ['needs at least two sizes with heap numbers'], misses: [] };
  return {
    verdict: ok ? 'met' : 'missed',
    lines,
    misses: ok
      ? []
      : [
          `spread above ${fmtBytes(t.maxSpreadBytes)} in: ${lines
            .filter((l) => l.endsWith('✗'))
            .map((l) => l.split(':')[0])
            .join(', ')}`,
        ],
  };
}

/** Per target: cells per size, a verdict ('met' | 'missed' | 'info' | 'n/a') and miss texts. */
export function evaluateTargets(targets, sizes) {
  return targets.map((t) => {
    if (t.kind === 'heap-flat') return { target: t, cells: {}, ...evaluateHeapFlat(t, sizes) };
    const cells = {};
    const misses = [];
    let any = false;
    for (const s of sizes) {
      const r = evaluateAtSize(t, s);
      if (!r) continue;
      any = true;
      cells[s.size] = r;
      if (r.ok === false) misses.push(missText(t, s.size, r));
    }
    const verdict = !any ? 'n/a' : t.info ? 'info' : misses.length ? 'missed' : 'met';
    return { target: t, cells, verdict, misses, lines: [] };
  });
}

// --- Markdown ---------------------------------------------------------------------------------

const VERDICT = { met: '**met**', missed: '**missed**', info: 'info', 'n/a': 'not measured' };

function targetTable(evals, sizes) {
  const out = [];
  out.push(`| Target | ${sizes.map((s) => sizeLabel(s.size)).join(' | ')} | Verdict |`);
  out.push(`|---|${sizes.map(() => '---:').join('|')}|---|`);
  for (const e of evals) {
    const cells = sizes.map((s) => {
      if (e.target.kind === 'heap-flat') return 'see below';
      const c = e.cells[s.size];
      return c ? `${c.text}${c.ok === false ? ' ✗' : c.ok ? ' ✓' : ''} <sub>(${c.subText ?? `min ${c.minText}`})</sub>` : '–';
    });
    out.push(`| ${e.target.label.replaceAll('|', '\\|')} | ${cells.join(' | ')} | ${VERDICT[e.verdict]} |`);
  }
  return out.join('\n');
}

const WHY_PLACEHOLDER = '_(placeholder — the lead fills this in after analysis)_';

/**
 * "Why" texts already written into an earlier report, by target label, so a rerun keeps the
 * analysis of a target that is still missed.
 */
export function previousWhys(markdown) {
  const whys = new Map();
  let label;
  for (const line of (markdown ?? '').split('\n')) {
    const head = /^\*\*(.+?)\*\* (?:missed|\()/.exec(line);
    if (head) label = head[1];
    const why = /^- Why: (.*)$/.exec(line);
    if (why && label && why[1] !== WHY_PLACEHOLDER) whys.set(label, why[1]);
  }
  return whys;
}

function missesSection(evals, whys) {
  const out = [];
  const why = (t) => `- Why: ${whys.get(t.label) ?? WHY_PLACEHOLDER}`;
  for (const e of evals) {
    if (e.target.kind === 'heap-flat') {
      out.push(`**${e.target.label}** (${VERDICT[e.verdict]}): JS heap allocated per scan at each size (method below).`);
      out.push('');
      for (const l of e.lines) out.push(`- ${l}`);
      if (e.verdict === 'missed') out.push(why(e.target));
      out.push('');
    } else if (e.verdict === 'missed') {
      out.push(`**${e.target.label}** missed:`);
      out.push('');
      for (const m of e.misses) out.push(`- ${m}`);
      out.push(why(e.target));
      out.push('');
    }
  }
  return out.join('\n');
}

function notesOf(info) {
  if (!info) return '';
  const parts = [];
  if (info.aggregates) parts.push(`${info.aggregates} remotes / ${info.aggregatedSockets} sockets`);
  if (info.bytesReceived) parts.push(`${(info.bytesReceived / 1e6).toFixed(2)} MB in ${info.recvCalls} recv`);
  return parts.join('; ');
}

function sizeTable(s, scenarios) {
  const out = [];
  out.push(`### ${sizeLabel(s.size)} sockets`);
  out.push('');
  for (const f of s.farms ?? []) {
    const custom = Object.keys(f.overrides ?? {}).length
      ? ` for ${f.rows.map((id) => `\`${id}\``).join(', ')} (${JSON.stringify(f.overrides)})`
      : '';
    out.push(
      `Farm${custom}: ${f.children} child process(es), ${f.connections} connections, ${f.sockets} farm sockets, ${f.offenders} offenders ` +
        `(setup ${(f.setupMs / 1000).toFixed(1)} s); host sockets before the farm: ${f.hostSocketsBefore ?? '?'}` +
        (custom ? '' : `; counted by the floor during the runs: ${s.hostSockets ?? '?'}`) +
        (f.hostTcpAllocated
          ? `; TCP sockets allocated host-wide, all namespaces (sockstat \`alloc\`), during the rounds: ${f.hostTcpAllocated[0] === f.hostTcpAllocated[1] ? f.hostTcpAllocated[0] : f.hostTcpAllocated.join('–')}.`
          : '.'),
    );
    out.push('');
  }
  out.push(
    '| Scenario | time/op (median) | min | CPU/op | ns/socket | × baseline | × baseline (CPU) | JS heap/op | sockets seen | records | notes |',
  );
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const row of scenarios) {
    const r = s.rows[row.id];
    if (!r || row.session) continue; // queue-watch sessions have their own section
    if (r.skipped) {
      out.push(`| \`${row.id}\` | skipped: ${r.skipped} | | | | | | | | | |`);
      continue;
    }
    const base = row.baseline ? measured(s, row.baseline) : undefined;
    const nsPerSocket = row.unit === 'lookup' || !s.hostSockets ? '–' : ((r.medianMs * 1e6) / s.hostSockets).toFixed(0);
    const ratio = base ? `${fmtX(pairedRatio(r, base))} ${row.baseline}` : '–';
    const cpuRatio = base ? fmtX(pairedCpuRatio(r, base)) : '–';
    const cpu = Number.isFinite(r.cpuMedianMs) ? fmtTime(row, r.cpuMedianMs) : '–';
    const seen = r.info?.socketsSeen ?? r.info?.sockets ?? '–';
    const baseSeen = base?.info?.socketsSeen;
    const drift = Number.isFinite(seen) && Number.isFinite(baseSeen) && Math.abs(seen - baseSeen) > 0.05 * baseSeen;
    const notes = [notesOf(r.info), drift ? `⚠ the host's sockets changed during the runs (${row.baseline} saw ${baseSeen})` : '']
      .filter(Boolean)
      .join('; ');
    const records = r.info?.records ?? '–';
    out.push(
      `| \`${row.id}\` | ${fmtTime(row, r.medianMs)} | ${fmtTime(row, r.minMs)} | ${cpu} | ${nsPerSocket} | ${ratio} | ${cpuRatio} | ${row.kind === 'floor' ? 'n/a (C)' : fmtBytes(r.heapBytes)} | ${seen} | ${records} | ${notes} |`,
    );
  }
  return out.join('\n');
}

export function renderMarkdown({ env, options, sizes, scenarios, targets, farmShape, previous }) {
  const evals = evaluateTargets(targets, sizes);
  const lines = [];
  lines.push('# sockwatch benchmark results');
  lines.push('');
  lines.push('Written by `npm run bench` (`node bench/run.mjs`); see bench/README.md for what each row means.');
  lines.push('');
  lines.push('## Environment');
  lines.push('');
  lines.push(`- Date: ${env.date}`);
  lines.push(`- Kernel: ${env.kernel}`);
  lines.push(`- CPU: ${env.cpu}, ${env.cores} cores`);
  lines.push(`- Node.js: ${env.node}`);
  lines.push(`- Tools: ${env.ss}; ${env.netstat}; ${env.cc}`);
  lines.push(`- Load average at start: ${env.loadavg}; at end: ${env.loadavgEnd ?? '?'}`);
  lines.push(
    `- Run: sizes ${options.sizes.join(', ')}, ${options.offenders} offenders, ${options.quick ? 'quick' : 'full'} mode, ${options.durationS} s in all`,
  );
  lines.push('');
  lines.push('## Targets');
  lines.push('');
  lines.push(targetTable(evals, sizes));
  lines.push('');
  lines.push(
    'A target is met when it holds at every measured size. Verdicts use ratios of medians paired by round (below); the value in brackets is ' +
      'the same comparison on the fastest call of each side, which shows what is left when noise from other processes on ' +
      'the machine is taken out; where the two disagree on a verdict, the machine was busy (see the load average) and a ' +
      'rerun on a quiet machine decides. For the queue-watch targets the bracket holds the largest jitter seen, or the RSS at the end of the storm (section Queue watch).',
  );
  lines.push('');
  lines.push(missesSection(evals, previousWhys(previous)));
  lines.push('## Results per size');
  lines.push('');
  lines.push(
    '`time/op` is the median over the timed calls (a scan, a spawned command with its parsing, or one lookup); ' +
      '`ns/socket` divides it by the host sockets the full floor dump counted; `× baseline` compares with the named floor row ' +
      "of the same size, paired by round: the median over rounds of (this row's median in round k) / (the floor's median in " +
      'round k). `CPU/op` is the process CPU time (user + system, all threads) per call, and `× baseline (CPU)` the same ' +
      'paired ratio on it: CPU time leaves out the time a process waited for a core, so it shows what a ratio is worth ' +
      'when the machine is busy. Rows that spawn commands have no CPU figure (their work is in the children). `JS heap/op` ' +
      'is V8 heap allocated per call (method below).',
  );
  lines.push('');
  for (const s of sizes) {
    lines.push(sizeTable(s, scenarios));
    lines.push('');
  }
  const queues = queueWatchSection({ env, sizes, scenarios, targets });
  if (queues) lines.push(queues);
  lines.push('## How it was measured');
  lines.push('');
  lines.push(farmShape);
  lines.push('');
  lines.push(
    '- Every row at every size runs in fresh processes: the floor is `bench/out/floor` (bench/floor.c, `cc -O2`), every other row ' +
      "`node bench/measure.mjs` with Node's default flags. Each process makes warm-up calls, then times each call with " +
      '`performance.now()` (the floor with `CLOCK_MONOTONIC`). Rows run in rounds (7, `--quick` 2; the slow shell pipelines ' +
      'and the all-records row fewer): each round runs every row once, each in a new process, so a slow phase of the shared ' +
      'machine hits all rows alike. `time/op` is the median over every timed call of every round; the floors make twice as ' +
      'many calls per process.',
  );
  lines.push(
    '- JS heap per call, in one more fresh process per row started with `--expose-gc --min-semi-space-size=256 ' +
      '--max-semi-space-size=256`: one warm-up batch of calls (50; 1–2 for the heavy rows) absorbs one-off costs; then, five ' +
      "times, a forced full GC, a reading of the used size of V8's young generation (`new_space` + `new_large_object_space`, " +
      'where every fresh allocation lands), a batch of calls, a second reading. A `PerformanceObserver` on `gc` entries ' +
      'discards any batch in which a collection ran. What a call allocates is deterministic, while one-off work of V8 ' +
      '(a table growing, a deoptimisation) can only add, so the smallest clean batch divided by its size is reported. Reading ' +
      'only the young generation keeps JIT code and bytecode, which V8 puts elsewhere, out of the number. Memory outside ' +
      "the V8 heap (Buffers, the addon's C++ vectors) is not counted. Timing processes do not carry these flags.",
  );
  lines.push(
    '- The floor sends the same requests the addon sends for that row (protocols, families, state masks and the kernel bytecode, compiled by ' +
      '`compileSampleOptions` from dist/), reads with a 64 KiB buffer and touches only the fixed `inet_diag_msg` fields (count, queue sums).',
  );
  lines.push(
    '- **Host-wide TCP hash:** every TCP dump walks the whole established hash of the host, which network namespaces share ' +
      '(unless `net.ipv4.tcp_child_ehash_entries` is set), and skips the sockets of other namespaces. Sockets of other processes or ' +
      "containers on the host therefore add to every TCP dump's cost, the floor's included; the ratios stay fair because both sides pay it.",
  );
  lines.push(
    '- `ss` and `/proc` parsing count sockets, sum the queues and keep offenders above 1000 bytes, the answer a threshold scan gives; ' +
      'the parsers work on the bytes and convert only the fields needed (bench/parsers.mjs), so the comparison is not against a slow parser. ' +
      "`sockets seen` is the last call's count; a ⚠ note marks rows during which other processes on the machine opened or " +
      "closed many sockets (more than 5% off the floor's count), which makes that row's ratio less trustworthy.",
  );
  lines.push('');
  return lines.join('\n');
}
