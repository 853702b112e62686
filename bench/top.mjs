// `sockwatch top`'s own CPU (issue 12), runnable alone: `node bench/top.mjs` (after `npm run build`).
//
// The harness's socket farm (bench/farm-plan.mjs: N loopback sockets over child processes, at most
// 20,000 fds each) holds the sockets; the real CLI (dist/cli/main.js top --interval S --view V) runs
// full screen in a tmux pane of its own server (fixed size and TERM), one run per view. After a
// warm-up (the Processes view's first /proc walk included) its CPU time (utime + stime from
// /proc/PID/stat: the kernel's dump work is system time of the process) is read over a window and
// divided by the window: percent of one core. RSS from /proc/PID/status at the end. The screen of
// each view is captured (bench/out/top-VIEW.txt) for the README's pictures.
//
//   node bench/top.mjs [--sockets 40000] [--interval 1] [--seconds 30] [--warmup 8] [--out bench/RESULTS.md]
//
// Writes its own marked section of RESULTS.md (bench/run.mjs carries it over) and the raw numbers to
// bench/out/top.json.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { installExitHandlers, startFarm } from './children.mjs';
import { planFarm } from './farm-plan.mjs';
import { environment, sizeLabel } from './report.mjs';
import { writeSection } from './sections.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..');
const CLI = path.join(root, 'dist', 'cli', 'main.js');
const OUT_DIR = path.join(here, 'out');
const VIEWS = ['destinations', 'queues', 'processes'];
const SOCKET = `sockwatch-bench-top-${process.pid}`;
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

function args() {
  const o = { sockets: 40000, interval: 1, seconds: 30, warmup: 8, out: path.join(here, 'RESULTS.md') };
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    const k = a[i].replace(/^--/, '');
    if (!(k in o)) throw new Error(`unknown option ${a[i]}`);
    o[k] = k === 'out' ? a[++i] : Number(a[++i]);
  }
  return o;
}

const tmux = (...a) =>
  execFileSync('tmux', ['-L', SOCKET, '-f', '/dev/null', ...a], { encoding: 'utf8', env: { ...process.env, TERM: 'xterm-256color' } });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // fields 14 and 15
}

function rssMiB(pid) {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function measureView(view, o) {
  const session = view;
  tmux(
    'new-session',
    '-d',
    '-s',
    session,
    '-x',
    '120',
    '-y',
    '40',
    'env',
    'TERM=xterm-256color',
    process.execPath,
    CLI,
    'top',
    '--interval',
    String(o.interval),
    '--view',
    view,
  );
  const pid = Number(tmux('display-message', '-p', '-t', session, '#{pane_pid}').trim());
  await sleep(o.warmup * 1000);
  const c0 = cpuSeconds(pid);
  const t0 = performance.now();
  await sleep(o.seconds * 1000);
  const cpu = cpuSeconds(pid) - c0;
  const wall = (performance.now() - t0) / 1000;
  const rss = rssMiB(pid);
  const screen = tmux('capture-pane', '-p', '-t', session).replace(/\s+$/, '') + '\n';
  writeFileSync(path.join(OUT_DIR, `top-${view}.txt`), screen);
  tmux('send-keys', '-t', session, 'q');
  for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await sleep(50);
  return { view, cpuPercent: (100 * cpu) / wall, cpuSeconds: cpu, wallSeconds: wall, rssMiB: rss, screen };
}

async function main() {
  const o = args();
  if (!existsSync(CLI)) throw new Error(`${path.relative(root, CLI)} is missing: run npm run build first`);
  mkdirSync(OUT_DIR, { recursive: true });
  installExitHandlers();
  process.on('exit', () => {
    try {
      tmux('kill-server');
    } catch {
      // no server
    }
  });
  const specs = planFarm({ sockets: o.sockets });
  process.stderr.write(`bench top: farm of ${o.sockets} sockets over ${specs.length} children…\n`);
  const farm = await startFarm(specs);
  const results = [];
  try {
    for (const view of VIEWS) {
      process.stderr.write(`bench top: ${view}, ${o.warmup} s warm-up + ${o.seconds} s…\n`);
      const r = await measureView(view, o);
      process.stderr.write(`bench top: ${view}: ${r.cpuPercent.toFixed(1)}% of one core, RSS ${r.rssMiB.toFixed(0)} MiB\n`);
      results.push(r);
    }
  } finally {
    await farm.stop();
  }
  const env = environment();
  writeFileSync(path.join(OUT_DIR, 'top.json'), JSON.stringify({ env, options: o, results }, null, 2) + '\n');
  const lines = [
    `## sockwatch top: its own CPU (bench/top.mjs)`,
    '',
    `${sizeLabel(o.sockets)} sockets (the harness farm), \`--interval ${o.interval}\`, a 120×40 tmux pane; CPU time of the`,
    `process (user + system, so the kernel's dump work is in it) over ${o.seconds} s after a ${o.warmup} s warm-up.`,
    `${env.date}, ${env.cpu} (${env.cores} cores), kernel ${env.kernel}, Node ${env.node}, load average ${env.loadavg} at the end.`,
    '',
    '| View | CPU (% of one core) | RSS |',
    '|---|---|---|',
    ...results.map((r) => `| ${r.view} | ${r.cpuPercent.toFixed(1)}% | ${r.rssMiB.toFixed(0)} MiB |`),
  ];
  writeSection(o.out, '<!-- top:start (bench/top.mjs) -->', '<!-- top:end -->', lines.join('\n'));
  process.stdout.write(lines.join('\n') + '\n');
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`bench top: ${e.stack ?? e}\n`);
    process.exit(1);
  },
);
