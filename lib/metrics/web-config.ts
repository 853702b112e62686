// --web.config.file: the web configuration file Prometheus exporters share (prometheus/exporter-toolkit),
// the subset sockwatch serves:
//
//   tls_server_config:
//     cert_file: server.crt          # both, or neither
//     key_file: server.key
//     client_ca_file: ca.crt         # clients' certificates are checked against it
//     client_auth_type: RequireAndVerifyClientCert   # NoClientCert (default without a CA), RequestClientCert,
//                                    # RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert
//                                    # (default with a CA)
//     min_version: TLS12             # TLS10..TLS13 (default TLS12); max_version likewise
//   http_server_config:
//     headers: { Name: value }       # added to every response
//   basic_auth_users:
//     alice: $2y$10$...              # bcrypt hashes (htpasswd -B), never passwords
//
// Relative file names are taken from the config file's directory. Any other key, a bad value, an
// unreadable file or a bad hash is a WebConfigError naming the file and the key, never a value: hashes
// and file contents never appear in a message.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as tls from 'node:tls';

export class WebConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebConfigError';
  }
}

export type ClientAuthType =
  'NoClientCert' | 'RequestClientCert' | 'RequireAnyClientCert' | 'VerifyClientCertIfGiven' | 'RequireAndVerifyClientCert';
const CLIENT_AUTH_TYPES: readonly ClientAuthType[] = [
  'NoClientCert',
  'RequestClientCert',
  'RequireAnyClientCert',
  'VerifyClientCertIfGiven',
  'RequireAndVerifyClientCert',
];
const TLS_VERSIONS: Record<string, tls.SecureVersion> = { TLS10: 'TLSv1', TLS11: 'TLSv1.1', TLS12: 'TLSv1.2', TLS13: 'TLSv1.3' };

export interface WebConfig {
  /** The file it came from (for messages). */
  file: string;
  tls?: {
    cert: Buffer;
    key: Buffer;
    ca?: Buffer;
    clientAuth: ClientAuthType;
    minVersion: tls.SecureVersion;
    maxVersion?: tls.SecureVersion;
  };
  headers: Record<string, string>;
  /** user -> bcrypt hash. */
  users?: Map<string, string>;
}

type Obj = Record<string, unknown>;

function isObj(x: unknown): x is Obj {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Reads and checks a web config file; throws WebConfigError (message starts with the file name). */
export function loadWebConfig(file: string): WebConfig {
  const fail = (what: string): never => {
    throw new WebConfigError(`${file}: ${what}`);
  };
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    return fail(`cannot read it (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const YAML = require('yaml') as typeof import('yaml');
  let doc: unknown;
  try {
    doc = YAML.parse(text, { prettyErrors: false, uniqueKeys: true });
  } catch (e) {
    // The parser's position only, never the text around it (it may hold a hash).
    const pos = (e as { linePos?: Array<{ line: number; col: number }> }).linePos?.[0];
    return fail(`not valid YAML${pos ? ` (line ${pos.line}, column ${pos.col})` : ''}`);
  }
  if (doc === null || doc === undefined) doc = {};
  if (!isObj(doc)) return fail('expected a mapping at the top');
  const dir = path.dirname(path.resolve(file));
  const known = (o: Obj, where: string, keys: readonly string[]): void => {
    for (const k of Object.keys(o)) if (!keys.includes(k)) fail(`${where}${k}: not a key sockwatch knows (it knows ${keys.join(', ')})`);
  };
  known(doc, '', ['tls_server_config', 'http_server_config', 'basic_auth_users']);
  const str = (o: Obj, key: string, where: string): string | undefined => {
    const x = o[key];
    if (x === undefined || x === null || x === '') return undefined;
    if (typeof x !== 'string') return fail(`${where}${key}: expected a string`);
    return x;
  };
  const readFile = (name: string, key: string): Buffer => {
    const p = path.resolve(dir, name);
    try {
      return fs.readFileSync(p);
    } catch (e) {
      return fail(`tls_server_config.${key}: cannot read ${p} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  };
  const config: WebConfig = { file, headers: {} };

  const t = doc.tls_server_config;
  if (t !== undefined && t !== null) {
    if (!isObj(t)) return fail('tls_server_config: expected a mapping');
    const w = 'tls_server_config.';
    known(t, w, ['cert_file', 'key_file', 'client_ca_file', 'client_auth_type', 'min_version', 'max_version']);
    const certFile = str(t, 'cert_file', w);
    const keyFile = str(t, 'key_file', w);
    if (!certFile || !keyFile) return fail('tls_server_config: needs both cert_file and key_file');
    const caFile = str(t, 'client_ca_file', w);
    const auth = str(t, 'client_auth_type', w) ?? (caFile ? 'RequireAndVerifyClientCert' : 'NoClientCert');
    if (!CLIENT_AUTH_TYPES.includes(auth as ClientAuthType))
      return fail(`tls_server_config.client_auth_type: "${auth}" is not one of ${CLIENT_AUTH_TYPES.join(', ')}`);
    if ((auth === 'VerifyClientCertIfGiven' || auth === 'RequireAndVerifyClientCert') && !caFile)
      return fail(`tls_server_config.client_auth_type ${auth} needs client_ca_file`);
    const version = (key: string): tls.SecureVersion | undefined => {
      const s = str(t, key, w);
      if (s === undefined) return undefined;
      return TLS_VERSIONS[s] ?? fail(`tls_server_config.${key}: "${s}" is not one of ${Object.keys(TLS_VERSIONS).join(', ')}`);
    };
    config.tls = {
      cert: readFile(certFile, 'cert_file'),
      key: readFile(keyFile, 'key_file'),
      ...(caFile ? { ca: readFile(caFile, 'client_ca_file') } : {}),
      clientAuth: auth as ClientAuthType,
      minVersion: version('min_version') ?? 'TLSv1.2',
      ...(version('max_version') ? { maxVersion: version('max_version') } : {}),
    };
  }

  const h = doc.http_server_config;
  if (h !== undefined && h !== null) {
    if (!isObj(h)) return fail('http_server_config: expected a mapping');
    known(h, 'http_server_config.', ['headers']);
    if (h.headers !== undefined && h.headers !== null) {
      if (!isObj(h.headers)) return fail('http_server_config.headers: expected a mapping of names to values');
      for (const [k, val] of Object.entries(h.headers)) {
        if (typeof val !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k) || /[\r\n]/.test(val))
          return fail(`http_server_config.headers.${k}: expected a header name with a one-line string value`);
        config.headers[k] = val;
      }
    }
  }

  const u = doc.basic_auth_users;
  if (u !== undefined && u !== null) {
    if (!isObj(u)) return fail('basic_auth_users: expected a mapping of user names to bcrypt hashes');
    config.users = new Map();
    for (const [user, hash] of Object.entries(u)) {
      if (typeof hash !== 'string' || !/^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash))
        return fail(
          `basic_auth_users.${user}: not a bcrypt hash (expected $2y$, $2b$ or $2a$ with cost and 53 characters, as htpasswd -B writes)`,
        );
      if (user.includes(':')) return fail(`basic_auth_users: a user name may not contain ":"`);
      config.users.set(user, hash);
    }
  }
  return config;
}

/**
 * Basic-auth checks against the config's bcrypt hashes. bcrypt is slow on purpose (tens of ms in
 * JavaScript), so a successful check is remembered (by user and a SHA-256 of the password, never the
 * password itself) and a scraper that sends the same credentials every second costs one bcrypt.
 */
export class BasicAuth {
  private readonly good = new Set<string>();

  constructor(private readonly users: ReadonlyMap<string, string>) {}

  /** True when the Authorization header names a user with the right password. */
  async check(header: string | undefined): Promise<boolean> {
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
    if (!m) return false;
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return false;
    const user = decoded.slice(0, colon);
    const password = decoded.slice(colon + 1);
    const hash = this.users.get(user);
    if (hash === undefined) return false;
    const key = `${user}\0${crypto.createHash('sha256').update(password).digest('hex')}`;
    if (this.good.has(key)) return true;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const bcrypt = require('bcryptjs') as typeof import('bcryptjs');
    const ok = await bcrypt.compare(password, hash);
    if (ok) {
      if (this.good.size >= 64) this.good.clear();
      this.good.add(key);
    }
    return ok;
  }
}
