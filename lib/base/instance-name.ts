// The instance name (COMPUTERNAME on App Service) made safe for a file or directory name. One rule,
// the original shell script's for every normal name: letters, digits, '.', '_' and '-' stay, any
// other character becomes '_'; leading dots become one '_' (no hidden file, no '..'); an empty name
// is 'unknown'. Used for dump_/trace_ artifact names, dump_taken_/trace_taken_ locks and
// outconn-logs-{instance}.
export function safeInstanceName(instance: string): string {
  if (typeof instance !== 'string') throw new TypeError(`instance must be a string, got ${typeof instance}`);
  const safe = instance.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_');
  return safe === '' ? 'unknown' : safe;
}
