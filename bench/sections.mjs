// Sections of RESULTS.md that other scripts own, between `<!-- NAME:start … -->` and `<!-- NAME:end -->`
// (bench/soak.mjs, bench/exporter.mjs, bench/shapes.mjs, bench/bpf-spike.mjs). bench/run.mjs
// re-renders the rest of the file and carries every such section over.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

const SECTION_RE = /<!-- ([\w-]+):start[^>]*-->[\s\S]*?<!-- \1:end -->/g;

/** `rendered` plus every marked section of `previous` that it does not hold yet, in their order. */
export function carrySections(previous, rendered) {
  let out = rendered;
  for (const m of (previous ?? '').matchAll(SECTION_RE)) {
    if (out.includes(`<!-- ${m[1]}:start`)) continue;
    out = `${out.replace(/\n*$/, '\n')}\n${m[0]}\n`;
  }
  return out;
}

/** `file` with the section between `start` and `end` replaced by `text` (appended when absent). */
export function writeSection(file, start, end, text) {
  const section = `${start}\n${text.trim()}\n${end}`;
  const md = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const i = md.indexOf(start);
  const j = md.indexOf(end);
  const next = i >= 0 && j > i ? md.slice(0, i) + section + md.slice(j + end.length) : `${md.replace(/\n*$/, '\n')}\n${section}\n`;
  writeFileSync(file, next);
}
