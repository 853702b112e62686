// Secrets never reach a log, an error message or the terminal. One rule decides what a secret is,
// used by redactUrl (parsed URLs) and redactText (free text: error messages, log lines, bodies):
// - a parameter name is secret when it is on SECRET_NAMES (compared case-insensitively) or contains
//   one of SECRET_PARTS; its value is replaced, in a query, in `name=value` text and in JSON
//   `"name": "value"`;
// - user info (`user:password@`) is replaced in every string that looks like a URL, whether it
//   parses or not (`http://u:p@[bad/…`, a port out of range, or no scheme at all: `u:p@host/…`);
// - the credentials of Authorization schemes (Bearer, Basic, SharedKey…) are replaced.

/** Names whose values are secrets (lower case). */
const SECRET_NAMES = new Set([
  'sig',
  'signature',
  'token',
  'access_token',
  'refresh_token',
  'id_token',
  'jwt',
  'key',
  'apikey',
  'api_key',
  'private_key',
  'secret',
  'client_secret',
  'pass',
  'password',
  'passwd',
  'pwd',
  'auth',
  'authorization',
  'credential',
  'credentials',
  'session',
  'code',
  'sas',
]);

/** A name containing one of these is secret too (x-api-key-token, db_password, mysecret…). */
const SECRET_PARTS = /secret|token|passw|signature|credential|apikey|api_key|private_key/;

export const REDACTED = 'REDACTED';

/** The one rule: true when a parameter or field of this name holds a secret. */
export function isSecretParam(name: string): boolean {
  const n = name.toLowerCase();
  return SECRET_NAMES.has(n) || SECRET_PARTS.test(n);
}

/** A URL with user info and secret query values replaced. Unparseable input goes through redactText. */
export function redactUrl(input: string | URL): string {
  let u: URL;
  try {
    u = new URL(String(input));
  } catch {
    return redactText(String(input));
  }
  if (u.username) u.username = REDACTED;
  if (u.password) u.password = REDACTED;
  for (const name of [...u.searchParams.keys()]) {
    if (isSecretParam(name)) u.searchParams.set(name, REDACTED);
  }
  // `user:pass@host/a` parses as scheme "user:" with an opaque path: its user info is still redacted.
  return u.toString().replace(BARE_USERINFO, `$1${REDACTED}@`);
}

/** scheme://…  up to white space or a quote. */
const URL_WITH_SCHEME = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/gi;
/** Punctuation after a URL in a sentence ("alerts to URL, outbox …"). */
const TRAILING_PUNCTUATION = /[.,;:!?)]+$/;
/** The user info of a URL that did not parse: everything up to the last '@' of the authority. */
const UNPARSED_USERINFO = /^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i;
/** user:password@host without a scheme, at the start of a word. */
const BARE_USERINFO = /(^|[\s"'<>(=,;])[^\s"'<>@/:]+:[^\s"'<>@/]*@(?=[A-Za-z0-9[])/g;
const NAME_VALUE = /([A-Za-z0-9_.-]+)=([^&\s"'<>)]+)/g;
const JSON_FIELD = /"([^"\\]{1,100})"(\s*:\s*)"(?:[^"\\]|\\.)*"/g;
const AUTH_SCHEME = /\b(Bearer|Basic|Digest|SharedKey|SharedKeyLite|SharedAccessSignature)\s+[A-Za-z0-9._~+/=:-]+/g;

function redactUrlInText(m: string): string {
  try {
    return redactUrl(new URL(m));
  } catch {
    return m.replace(UNPARSED_USERINFO, `$1${REDACTED}@`);
  }
}

/** Redacts URLs, user info, secret `name=value` pairs, JSON fields and auth credentials anywhere in a text. */
export function redactText(text: string): string {
  return text
    .replace(URL_WITH_SCHEME, (m) => {
      // Punctuation after the URL stays outside it (re-serialized inside it, a comma became %2C and a
      // period vanished), unless the URL ends with a secret value: that may end with the punctuation.
      const tail = TRAILING_PUNCTUATION.exec(m)?.[0] ?? '';
      const shown = redactUrlInText(m.slice(0, m.length - tail.length));
      return tail && shown.endsWith(REDACTED) ? redactUrlInText(m) : shown + tail;
    })
    .replace(BARE_USERINFO, `$1${REDACTED}@`)
    .replace(NAME_VALUE, (m, name: string) => (isSecretParam(name) ? `${name}=${REDACTED}` : m))
    .replace(JSON_FIELD, (m, name: string, colon: string) => (isSecretParam(name) ? `"${name}"${colon}"${REDACTED}"` : m))
    .replace(AUTH_SCHEME, (_m, scheme: string) => `${scheme} ${REDACTED}`);
}
