// What the host-shape and BPF runs share (bench/shapes.mjs, bench/bpf-spike.mjs): compiling the C
// helpers, the floor process, pooling a row's rounds, the namespace's TCP counters.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runChild, startFarm } from './children.mjs';
import { median, min } from './stats.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const OUT_DIR = path.join(here, 'out');
export const FLOOR_BIN = path.join(OUT_DIR, 'floor');
const FLOOR_WARMUPS = 3;

/** Compiles one C helper into bench/out unless it is newer than its source. */
export function compileC(bin, src, extra = []) {
  mkdirSync(OUT_DIR, { recursive: true });
  if (existsSync(bin) && statSync(bin).mtimeMs >= statSync(src).mtimeMs) return;
  execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-o', bin, src, ...extra], { stdio: 'inherit' });
}

/** Runs `bin` (the floor, or a program printing the floor's JSON) and returns one round's numbers. */
export async function runFloorLike(bin, args) {
  const r = await runChild(bin, args);
  if (r.code !== 0) return { skipped: `${path.basename(bin)} failed: ${r.stderr.trim()}` };
  const out = JSON.parse(r.stdout.trim().split('\n').pop());
  return { times: out.ms, cpuTimes: out.cpuMs, info: { ...out, ms: undefined, cpuMs: undefined, socketsSeen: out.sockets } };
}

/** bench/floor.c sending what the addon sends for `row.options` (compiled by the library), or this bytecode instead. */
export function runFloor(row, lib, runs, bytecodeHex) {
  const req = lib.compileSampleOptions(row.options ?? {});
  const args = ['-r', String(runs), '-w', String(FLOOR_WARMUPS), '-p', String(req.protocols), '-f', String(req.families)];
  args.push('-t', String(req.tcpStates), '-u', String(req.udpStates));
  if (bytecodeHex ?? req.bytecode?.length) args.push('-b', bytecodeHex ?? Buffer.from(req.bytecode).toString('hex'));
  if (row.oneWalk) args.push('-1');
  return runFloorLike(FLOOR_BIN, args);
}

/** Pools a row's rounds: median and min over every timed call, medians per round for paired ratios. */
export function summarize(rounds) {
  const skipped = rounds.find((r) => r.skipped);
  if (skipped) return { skipped: skipped.skipped };
  const hasCpu = rounds.every((r) => Array.isArray(r.cpuTimes));
  return {
    medianMs: median(rounds.flatMap((r) => r.times)),
    minMs: min(rounds.flatMap((r) => r.times)),
    rounds: rounds.length,
    roundMedians: rounds.map((r) => median(r.times)),
    cpuMedianMs: hasCpu ? median(rounds.flatMap((r) => r.cpuTimes)) : null,
    cpuRoundMedians: hasCpu ? rounds.map((r) => median(r.cpuTimes)) : null,
    info: rounds[rounds.length - 1].info,
  };
}

/** TCP counters of this network namespace (/proc/net/sockstat). */
export function sockstat() {
  const tcp = /^TCP: inuse (\d+) orphan (\d+) tw (\d+) alloc (\d+)/m.exec(readFileSync('/proc/net/sockstat', 'utf8'));
  return tcp ? { inuse: Number(tcp[1]), tw: Number(tcp[3]), alloc: Number(tcp[4]) } : undefined;
}

/**
 * startFarm in groups of `perGroup` children, one group after another: on a loaded 2-core machine
 * twelve children connecting at once overflow their accept queues and some connections wait for SYN
 * retransmits (the first 200k attempt never got ready within 180 s).
 */
export async function startFarmStaged(specs, perGroup = 2) {
  const farms = [];
  const stop = () => Promise.all(farms.map((f) => f.stop()));
  try {
    for (let i = 0; i < specs.length; i += perGroup) farms.push(await startFarm(specs.slice(i, i + perGroup)));
  } catch (err) {
    await stop();
    throw err;
  }
  return { children: farms.flatMap((f) => f.children), stop };
}
