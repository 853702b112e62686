// The soak's section of RESULTS.md. Rule: bench/soak.mjs owns the text between the two markers and
// writes nothing else; bench/run.mjs re-renders the rest of the file and carries this section over.
export const SOAK_START = '<!-- soak:start (written by bench/soak.mjs) -->';
export const SOAK_END = '<!-- soak:end -->';

/** The marked section of a RESULTS.md text, markers included, or '' when it has none. */
export function soakSection(markdown) {
  const i = markdown.indexOf(SOAK_START);
  const j = markdown.indexOf(SOAK_END);
  if (i < 0 || j < i) return '';
  return markdown.slice(i, j + SOAK_END.length);
}

/** `markdown` with its soak section replaced by `section` (appended when it has none). */
export function withSoakSection(markdown, section) {
  const old = soakSection(markdown);
  if (old) return markdown.replace(old, section);
  return `${markdown.replace(/\n*$/, '\n')}\n${section}\n`;
}
