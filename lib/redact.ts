// Secrets never reach a log or the terminal. Every URL that is printed goes through redactUrl,
// every free text that may embed one goes through redactText.

/** Query parameter names whose values are secrets (compared case-insensitively). */
const SECRET_PARAMS = new Set([
  'sig',
  'signature',
  'token',
  'access_token',
  'accesstoken',
  'api_key',
  'apikey',
  'key',
  'secret',
  'password',
  'pwd',
  'auth',
  'code',
  'client_secret',
  'sas',
]);

export const REDACTED = 'REDACTED';

export function isSecretParam(name: string): boolean {
  const n = name.toLowerCase();
  return SECRET_PARAMS.has(n) || /(secret|token|passw|apikey|api_key|signature)/.test(n);
}

/** A URL with user:password and secret-looking query values replaced. Unparseable input is redacted whole. */
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
  return u.toString();
}

/** Redacts URLs, `sig=` values and bearer tokens anywhere in a text (error messages, log lines). */
export function redactText(text: string): string {
  return text
    .replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/gi, (m) => {
      try {
        return redactUrl(new URL(m));
      } catch {
        return m;
      }
    })
    .replace(
      /\b(sig|signature|token|access_token|api_key|apikey|secret|password|client_secret)=([^&\s"'<>)]+)/gi,
      (_m, k) => `${k}=${REDACTED}`,
    )
    .replace(
      /("(?:sig|signature|token|access_token|api_key|apikey|secret|password|client_secret)"\s*:\s*)"[^"]*"/gi,
      (_m, k) => `${k}"${REDACTED}"`,
    )
    .replace(/\b(Bearer|Basic|SharedKey)\s+[A-Za-z0-9._~+/=:-]+/g, (_m, scheme) => `${scheme} ${REDACTED}`);
}
