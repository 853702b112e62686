// The host-shapes and BPF sections of bench/RESULTS.md (issue 13). Rule: bench/shapes.mjs and
// bench/bpf-spike.mjs own the text between their markers ("shapes", "bpf") and write nothing else of
// the file; bench/run.mjs carries both over (bench/sections.mjs).
import { evaluateTargets, fmtTime, pairedCpuRatio, pairedRatio } from './report.mjs';
import { targets } from './scenarios.mjs';
import { writeSection as writeMarkedSection } from './sections.mjs';

const marker = (part) => [
  `<!-- ${part}:start (written by bench/${part === 'shapes' ? 'shapes' : 'bpf-spike'}.mjs) -->`,
  `<!-- ${part}:end -->`,
];

/** `file` with the marked part replaced by `text` (appended when absent). */
export function writeSection(file, text, part = 'shapes') {
  const [start, end] = marker(part);
  writeMarkedSection(file, start, end, text);
}

const x = (v) => (Number.isFinite(v) ? `${v.toFixed(2)}×` : '–');
const n = (v) => (Number.isFinite(v) ? v.toLocaleString('en-US') : '–');

/** Targets of the shape runs: the table's own, plus the queue watch's request against the all-states floor. */
export const SHAPE_TARGETS = [
  ...targets.filter((t) => t.kind !== 'heap-flat' && t.kind !== 'memory-bounded' && t.id !== 'lookup'),
  {
    id: 'queue-vs-floor',
    label: 'queue-watch scan ≤ 0.6× the all-states floor (same run; issue 13, TIME_WAIT-heavy shape)',
    kind: 'ratio',
    row: 'queue-scan',
    over: 'floor-1walk',
    max: 0.6,
    only: 'timewait',
  },
  {
    id: 'queue-vs-own-floor',
    label: 'queue-watch scan vs its own floor (same state mask)',
    kind: 'ratio',
    row: 'queue-scan',
    over: 'floor-queue',
    info: true,
  },
];

function farmLine(s) {
  const i = s.info;
  const st = i.sockstat.filter(Boolean);
  const tw = st.map((v) => v.tw);
  const inuse = st.map((v) => v.inuse);
  return (
    `**${i.label}** (\`${i.shape}\`): ${i.children} farm process(es), ${n(i.connections)} connections, ${n(i.farmSockets)} farm sockets, ${i.offenders} offenders` +
    (i.timeWaitTarget
      ? `, plus ${n(i.timeWaitTarget)} client-side TIME_WAIT sockets from short loopback connections, ${i.timeWaitRampS ? `made over a ${i.timeWaitRampS} s ramp and then kept topped up (a steady churn of about ${n(Math.round(i.timeWaitTarget / 60))} connections a second, as TIME_WAIT lasts 60 s)` : `made at once (${((i.timeWaitSetup?.setupMs ?? 0) / 1000).toFixed(1)} s) and kept topped up: they expire together every minute, so the count dipped while the rows ran`}`
      : '') +
    `; during the rounds the namespace held ${n(Math.min(...inuse))}–${n(Math.max(...inuse))} TCP sockets in use and ${n(Math.min(...tw))}–${n(Math.max(...tw))} in TIME_WAIT (sockstat); the full floor counted ${n(s.hostSockets)}.`
  );
}

/** A row's failure in one line: the error's first line; a process killed without a word is said so. */
function skipReason(text) {
  const first = text.split(/\s+at /)[0].trim();
  if (/failed:$/.test(first)) return `${first} (killed without output: the 300 s limit per measuring process)`;
  return first.replaceAll('|', '\\|');
}

/** Why the queue-watch target is where it is: its own floor against the all-states floor. */
function queueWhy(shapes, evals) {
  const e = evals.find((v) => v.target.id === 'queue-vs-floor');
  const s = shapes.find((v) => v.size === 'timewait');
  const own = s?.rows['floor-queue'];
  const all = s?.rows['floor-1walk'];
  if (!e || e.verdict !== 'missed' || !own || own.skipped || !all || all.skipped) return '';
  return (
    `**Why the queue-watch target is missed:** the request itself is as small as the kernel allows — its own floor (\`floor-queue\`, the same state mask in C) costs ${x(pairedRatio(own, all))} of the all-states floor (CPU ${x(pairedCpuRatio(own, all))}) in this run, and the scan runs at its floor (${x(pairedCpuRatio(s.rows['queue-scan'], own))} in CPU). ` +
    'What is left is the walk: the kernel skips a TIME_WAIT socket outside the mask before filling a record, but it still visits it in the hash chain and reads its namespace and state (one cache line each, 40,000 of them here), and no state mask or bytecode avoids that. The 0.6× target sits at that floor on this machine (the quieter run in research/fleet-and-limits.md measured the same two floors at 0.55×); the wall-clock ratios of this run, with the load average above 10, are noisier than the CPU ratios.'
  );
}

function shapeTable(s, rows) {
  const out = [
    farmLine(s),
    '',
    '| Row | time/op (median) | min | CPU/op | × baseline | × baseline (CPU) | sockets seen | records |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const row of rows) {
    const r = s.rows[row.id];
    if (!r) continue;
    if (r.skipped) {
      out.push(`| \`${row.id}\` | not measured: ${skipReason(r.skipped)} | | | | | | |`);
      continue;
    }
    if (row.session) {
      out.push(
        `| \`${row.id}\` (CLI, ${r.ticks} ticks) | scan p50 ${fmtTime(row, r.scanP50Ms)} | – | CPU ${r.cpuPct.toFixed(1)}% of a core (kernel ${r.sysCpuPct.toFixed(1)}%) | ${r.missedTicks} missed ticks | jitter p99 ${fmtTime(row, r.jitterP99Ms)} | ${n(r.socketsSeen)} | – |`,
      );
      continue;
    }
    const base = row.baseline ? s.rows[row.baseline] : undefined;
    const ok = base && !base.skipped;
    out.push(
      `| \`${row.id}\` | ${fmtTime(row, r.medianMs)} | ${fmtTime(row, r.minMs)} | ${Number.isFinite(r.cpuMedianMs) ? fmtTime(row, r.cpuMedianMs) : '–'} | ${ok ? `${x(pairedRatio(r, base))} ${row.baseline}` : '–'} | ${ok ? x(pairedCpuRatio(r, base)) : '–'} | ${n(r.info?.socketsSeen ?? r.info?.sockets)} | ${n(r.info?.records)} |`,
    );
  }
  return out.join('\n');
}

export function renderShapesSection({ env, rounds, shapes, rows }) {
  const evals = SHAPE_TARGETS.map((t) => evaluateTargets([t], t.only ? shapes.filter((s) => s.size === t.only) : shapes)[0]);
  const out = [];
  out.push('## Host shapes (issue 13)');
  out.push('');
  out.push(
    `${env.date.slice(0, 10)} · Linux ${env.kernel} · ${env.cpu} × ${env.cores} · Node ${env.node} · \`node bench/shapes.mjs\` (\`npm run bench:shapes\`), ${rounds} rounds, ${env.durationS} s; load average at the start ${env.loadavg}.`,
  );
  out.push('');
  out.push(
    'Each shape runs in a network namespace of its own whose TCP hash has the host’s size (`tcp_child_ehash_entries` = `tcp_ehash_entries` while the namespace was created, then put back), so every walk measured here covers this farm only, and other processes on the machine (6 other sessions shared its 2 cores) add CPU noise but no sockets. ' +
      `Inside: \`tcp_tw_reuse\` = 0 (a connect may not recycle a TIME_WAIT), \`tcp_max_tw_buckets\` = ${env.sysctls?.tcp_max_tw_buckets}, \`ip_local_port_range\` left at ${env.sysctls?.ip_local_port_range} (the TIME_WAIT maker spreads over 256 source addresses, under 1% of the range each); the namespace, its sysctls and its sockets are gone after the run. ` +
      'Rows, processes and ratios as in the tables above (fresh process per row and round, ratios paired by round); no heap rows here.',
  );
  out.push('');
  out.push(`| Target | ${shapes.map((s) => s.info.label).join(' | ')} | Verdict |`);
  out.push(`|---|${shapes.map(() => '---:').join('|')}|---|`);
  for (const e of evals) {
    const cells = shapes.map((s) => {
      const c = e.cells[s.size];
      const cpu = Number.isFinite(c?.cpu) ? `; CPU ${x(c.cpu)}` : '';
      return c ? `${c.text}${c.ok === false ? ' ✗' : c.ok ? ' ✓' : ''} <sub>(${c.subText ?? `min ${c.minText}`}${cpu})</sub>` : '–';
    });
    out.push(`| ${e.target.label.replaceAll('|', '\\|')} | ${cells.join(' | ')} | ${e.verdict} |`);
  }
  out.push('');
  const why = queueWhy(shapes, evals);
  if (why) out.push(why, '');
  for (const s of shapes) {
    out.push(`### ${s.info.label}`);
    out.push('');
    out.push(s.failed ? `Not measured: ${s.failed}.` : shapeTable(s, rows));
    for (const r of s.reruns ?? [])
      if (r.whole) out.push('', `This shape: from a rerun of its own (${r.rounds} rounds, ${r.date}, load average ${r.loadavg}).`);
      else
        out.push(
          '',
          `Rows ${r.rows.map((id) => `\`${id}\``).join(', ')}: from a rerun of their own (${r.rounds} rounds, ${r.date}, load average ${r.loadavg}).`,
        );
    out.push('');
  }
  return out.join('\n');
}

/** The verdict of the spike from its figures: met (then the integration sketch) or missed and why. */
function bpfVerdict(sizes) {
  const ratio = (s, id, cpu) => {
    const r = s.rows[id];
    const f = s.rows['floor-1walk'];
    if (!r || r.skipped || !f || f.skipped) return NaN;
    return cpu ? pairedCpuRatio(r, f) : pairedRatio(r, f);
  };
  const judged = sizes.filter((s) => BPF_TARGETS[s.size] !== undefined && Number.isFinite(ratio(s, 'bpf-queue')));
  if (judged.length === 0) return '**Verdict:** not measured at 40k or 200k.';
  const met = judged.every((s) => ratio(s, 'bpf-queue') <= BPF_TARGETS[s.size] && ratio(s, 'bpf-queue', true) <= BPF_TARGETS[s.size]);
  const fig = (s) =>
    `${n(s.size)}: scan ${x(ratio(s, 'bpf-queue'))} (CPU ${x(ratio(s, 'bpf-queue', true))}) of the netlink floor, the iterator's walk alone ${x(ratio(s, 'bpf-walk'))} (CPU ${x(ratio(s, 'bpf-walk', true))}) against netlink's walk alone ${x(ratio(s, 'floor-walk'))} (CPU ${x(ratio(s, 'floor-walk', true))})`;
  if (met) return `**Verdict: targets met** (${judged.map(fig).join('; ')}).`;
  return (
    `**Verdict: the targets cannot be met with the kernel's socket iterators; the spike stops here (no backend, no integration).** ${judged.map(fig).join('; ')}. ` +
    'What a BPF program can skip is the fill and copy of a record (netlink pays ~120 bytes per reported socket), but not the iterator’s own work per socket, which happens before and after the program whatever it decides: a reference (`sock_hold` / `sock_gen_put`) and, on every full socket, the socket lock (`lock_sock` / `release_sock` since 6.4), all writes to the socket’s own cache lines, plus the seq_file machinery per element. A program that returns at once already costs the fraction of the whole netlink dump shown above (the targets allow 0.2× and 0.15× for the whole scan), while netlink’s own walk with nothing reported (a bytecode that rejects every socket: no reference, no lock, no fill) is the cheap one. The cheapest snapshot this kernel offers is therefore netlink with as few sockets in the state mask and bytecode as the question allows (the queue watch’s state mask, host shapes above); the latency table below shows what applications see meanwhile.'
  );
}

/** Target of the BPF queue scan against the netlink floor, by farm size (issue 13). */
const BPF_TARGETS = { 40000: 0.2, 200000: 0.15 };

export function renderBpfSection({ env, options, sizes, rows }) {
  const out = ['## BPF socket iterator spike (issue 13)', ''];
  out.push(
    `${env.date.slice(0, 10)} · Linux ${env.kernel} · ${env.cpu} × ${env.cores} (shared with 6 other sessions) · ${env.clang} · \`node bench/bpf-spike.mjs\` (\`npm run bench:bpf\`), ${options.rounds} rounds of 22 scans per row (7 at 200k); load average at the start ${env.loadavg}; ${env.durationS} s.`,
  );
  out.push('');
  out.push(
    'The standard farm in a network namespace with a TCP hash of its own (as the host shapes). `floor-*`: bench/floor.c (netlink, fixed fields only). `bpf-*`: native-bpf/sockscan (libbpf, static), one `read()` loop per iterator (TCP, UDP) per scan; the programs apply the state mask, thresholds and accept-at-limit in the kernel and emit 64-byte records for offenders only; per-state counts of every socket walked come from the object’s .bss. Times are per full scan (TCP + UDP); ratios paired by round; CPU is the process’s CPU time, which leaves out time spent waiting for a core on this busy machine.',
  );
  out.push('');
  out.push(`| Target | ${sizes.map((s) => n(s.size)).join(' | ')} | Verdict |`);
  out.push(`|---|${sizes.map(() => '---:').join('|')}|---|`);
  for (const id of ['bpf-scan', 'bpf-queue']) {
    let missed = false;
    let judged = false;
    const cells = sizes.map((s) => {
      const r = s.rows[id];
      const f = s.rows['floor-1walk'];
      if (!r || r.skipped || !f || f.skipped) return '–';
      const v = pairedRatio(r, f);
      const max = BPF_TARGETS[s.size];
      const ok = max === undefined ? undefined : v <= max;
      if (ok === false) missed = true;
      if (ok !== undefined) judged = true;
      return `${x(v)}${ok === false ? ' ✗' : ok ? ' ✓' : ''} <sub>(CPU ${x(pairedCpuRatio(r, f))})</sub>`;
    });
    out.push(
      `| \`${id}\` ≤ 0.2× (40k) / 0.15× (200k) the netlink floor (\`floor-1walk\`) | ${cells.join(' | ')} | ${!judged ? 'n/a' : missed ? '**missed**' : 'met'} |`,
    );
  }
  for (const id of ['bpf-walk', 'floor-walk']) {
    const cells = sizes.map((s) => {
      const r = s.rows[id];
      const f = s.rows['floor-1walk'];
      return r && !r.skipped && f && !f.skipped ? `${x(pairedRatio(r, f))} <sub>(CPU ${x(pairedCpuRatio(r, f))})</sub>` : '–';
    });
    out.push(`| \`${id}\` (the walk alone) vs the netlink floor | ${cells.join(' | ')} | info |`);
  }
  const cpuCells = sizes.map((s) => {
    const r = s.rows['bpf-queue'];
    return r && !r.skipped
      ? `${((r.cpuMedianMs / 250) * 100).toFixed(1)}% <sub>(netlink ${((s.rows['floor-queue'].cpuMedianMs / 250) * 100).toFixed(1)}%)</sub>`
      : '–';
  });
  out.push(
    `| kernel pass of \`sockwatch queues\` at 250 ms, CPU per scan / 250 ms (target: the whole CLI < 5% of a core at 40k) | ${cpuCells.join(' | ')} | estimate |`,
  );
  out.push('');
  out.push(bpfVerdict(sizes));
  out.push('');
  for (const s of sizes) {
    out.push(`### ${n(s.size)} sockets`);
    out.push('');
    const st = s.info.sockstat.filter(Boolean);
    out.push(
      `Farm: ${s.info.children} processes, ${n(s.info.sockets)} sockets; the namespace held ${n(Math.min(...st.map((v) => v.inuse)))}–${n(Math.max(...st.map((v) => v.inuse)))} TCP sockets in use during the rounds.`,
    );
    out.push('');
    out.push(
      '| Row | what | time/scan (median) | min | CPU/scan | × floor-1walk | × floor-1walk (CPU) | sockets in the mask | offenders |',
    );
    out.push('|---|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const row of rows) {
      const r = s.rows[row.id];
      if (!r) continue;
      if (r.skipped) {
        out.push(`| \`${row.id}\` | ${row.title} | skipped: ${r.skipped} | | | | | | |`);
        continue;
      }
      const f = s.rows['floor-1walk'];
      const ms = (v) => (v >= 10 ? `${v.toFixed(1)} ms` : `${v.toFixed(2)} ms`);
      out.push(
        `| \`${row.id}\` | ${row.title} | ${ms(r.medianMs)} | ${ms(r.minMs)} | ${ms(r.cpuMedianMs)} | ${row.id === 'floor-1walk' ? '–' : x(pairedRatio(r, f))} | ${row.id === 'floor-1walk' ? '–' : x(pairedCpuRatio(r, f))} | ${n(r.info.socketsSeen)} | ${row.kind === 'bpf' ? n(r.info.offenders) : '–'} |`,
      );
    }
    const p = s.parity;
    if (p)
      out.push(
        '',
        `Same answer: the addon (netlink) found ${p.netlinkOffenders} offenders among ${n(p.netlinkSockets)} sockets, the BPF iterator ${p.bpfOffenders} among ${n(p.bpfSockets)} (${n(p.bpfWalked)} walked): ${p.same ? 'the same sockets with the same queues' : `**different** (only netlink: ${p.onlyNetlink.join('; ')}; only BPF: ${p.onlyBpf.join('; ')})`}.`,
      );
    if (s.latency) {
      out.push(
        '',
        `Latency of a busy application on its own sockets at this size: bench/bpf-echo.c, 16 loopback connections, 64-byte ping-pong (client thread → server thread, TCP_NODELAY), ${options.latencySeconds} s per condition, ${options.latencyRounds} rounds with the conditions interleaved; a scanner process runs back to back beside it (medians over rounds):`,
        '',
      );
      out.push(
        '| Beside the ping-pong | round trips <sub>(per round)</sub> | RTT p50 | p90 | p99 <sub>(per round)</sub> | p99.9 <sub>(per round)</sub> | max |',
      );
      out.push('|---|---:|---:|---:|---:|---:|---:|');
      const label = { idle: 'nothing', netlink: 'netlink floor scans, back to back', bpf: 'BPF iterator scans, back to back' };
      for (const [name, l] of Object.entries(s.latency)) {
        const per = (key, f) => `<sub>(${l.rounds.map((r) => f(r[key])).join(', ')})</sub>`;
        out.push(
          `| ${label[name]}${l.scannerRan === false ? ' (⚠ the scanner stopped early)' : ''} | ${n(l.roundTrips)} ${per('roundTrips', n)} | ${l.p50Us.toFixed(1)} µs | ${l.p90Us.toFixed(1)} µs | ${l.p99Us.toFixed(1)} µs ${per('p99Us', (v) => v.toFixed(0))} | ${l.p999Us.toFixed(0)} µs ${per('p999Us', (v) => v.toFixed(0))} | ${l.maxUs.toFixed(0)} µs |`,
        );
      }
      out.push(
        '',
        `Read the two scanner rows against each other: with a load average of ${env.loadavg.split(' ')[0]} at the start, the machine's other sessions set the noise, and the row with nothing beside the ping-pong is no cleaner than the others (fewer round trips than beside netlink scans). What the iterator adds over netlink is the lock it takes on each of the ping-pong's sockets once per scan; what both add is a core kept busy scanning.`,
      );
    }
    out.push('');
  }
  return out.join('\n');
}
