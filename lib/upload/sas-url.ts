// Parsing and checking a container SAS URL. Messages show the URL only through redactUrl: the
// signature never appears in an error.
import { isSecretParam, redactUrl } from '../redact';
import { SockwatchError } from '../base/errors';

export interface ContainerSasInfo {
  /** The container URL without the query string (safe to log). */
  containerUrl: string;
  accountName: string;
  containerName: string;
  /** `se=`: when the SAS stops working, if the URL says. */
  expiresOn?: Date;
  /** `sp=`: the granted permissions (letters such as "racwdl"), if the URL says. */
  permissions?: string;
  /** The whole URL with the signature and other secrets replaced (safe to log). */
  redactedUrl: string;
}

export interface ParseContainerSasOptions {
  /** The current time for the expiry check (default: now). */
  now?: Date;
  /** Return an expired SAS instead of throwing SasExpiredError (default false). */
  allowExpired?: boolean;
}

/** The SAS in a container URL is past its `se=` expiry. */
export class SasExpiredError extends SockwatchError {
  constructor(
    readonly containerUrl: string,
    readonly expiresOn: Date,
  ) {
    super('ERR_SOCKWATCH_SAS_EXPIRED', `the container SAS for ${containerUrl} expired at ${expiresOn.toISOString()}; ask for a new SAS URL`);
    this.name = 'SasExpiredError';
  }
}

// Hosts addressed path-style (/account/container), as Azurite and the storage emulator are.
function isPathStyleHost(hostname: string): boolean {
  if (hostname === 'localhost' || !hostname.includes('.')) return true;
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(hostname)) return true;
  return hostname.startsWith('[');
}

function bad(input: string, why: string): TypeError {
  return new TypeError(`containerSasUrl ${JSON.stringify(redactUrl(input))} ${why}`);
}

/**
 * Splits a container SAS URL (https://ACCOUNT.blob.core.windows.net/CONTAINER?sv=…&sig=…, or the
 * path-style http://127.0.0.1:10000/ACCOUNT/CONTAINER?… of Azurite) into its parts.
 * A malformed URL → TypeError; an expired SAS → SasExpiredError. Makes no request.
 */
export function parseContainerSasUrl(input: string, options: ParseContainerSasOptions = {}): ContainerSasInfo {
  if (typeof input !== 'string') {
    throw new TypeError(`containerSasUrl must be a string (got ${input === null ? 'null' : typeof input})`);
  }
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw bad(input, 'is not a valid URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw bad(input, 'must use https: or http:');
  if (url.username || url.password) throw bad(input, 'must not carry a user name or password');
  if (!url.searchParams.get('sig')) throw bad(input, 'has no SAS signature (sig=)');
  const resource = url.searchParams.get('sr');
  if (resource !== null && resource !== 'c') throw bad(input, `is not a container SAS (sr=${resource}, expected sr=c)`);

  const segments = url.pathname.split('/').filter((s) => s !== '');
  let accountName: string;
  let rest: string[];
  if (isPathStyleHost(url.hostname)) {
    if (segments.length === 0) throw bad(input, 'names no account (expected /ACCOUNT/CONTAINER)');
    accountName = decodeURIComponent(segments[0]!);
    rest = segments.slice(1);
  } else {
    accountName = url.hostname.split('.')[0]!;
    rest = segments;
  }
  if (rest.length === 0) throw bad(input, 'names no container');
  if (rest.length > 1) throw bad(input, 'points below a container (expected a container URL, not a blob URL)');
  const containerName = decodeURIComponent(rest[0]!);

  const containerUrl = `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
  let expiresOn: Date | undefined;
  const se = url.searchParams.get('se');
  if (se !== null) {
    expiresOn = new Date(se);
    if (Number.isNaN(expiresOn.getTime())) throw bad(input, `has an unreadable expiry se=${JSON.stringify(se)}`);
  }
  const now = options.now ?? new Date();
  if (expiresOn !== undefined && !options.allowExpired && expiresOn.getTime() <= now.getTime()) {
    throw new SasExpiredError(containerUrl, expiresOn);
  }
  const permissions = url.searchParams.get('sp') ?? undefined;
  return { containerUrl, accountName, containerName, expiresOn, permissions, redactedUrl: redactUrl(url) };
}

/** The secret values of a URL (as written and decoded), to scrub them from any foreign text. */
export function urlSecrets(input: string): string[] {
  const out = new Set<string>();
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    return [];
  }
  const raw = url.search.slice(1).split('&');
  for (const pair of raw) {
    const eq = pair.indexOf('=');
    if (eq < 0) continue;
    const name = decodeURIComponentSafe(pair.slice(0, eq));
    if (!isSecretParam(name)) continue;
    const value = pair.slice(eq + 1);
    const decoded = decodeURIComponentSafe(value.replace(/\+/g, ' '));
    for (const v of [value, decoded, encodeURIComponent(decoded)]) if (v.length >= 4) out.add(v);
  }
  return [...out].sort((a, b) => b.length - a.length);
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
