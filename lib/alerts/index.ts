// Durable alert outbox and HTTP GET delivery. The layer knows nothing of what an alert means: an
// alert is a flat record of query parameters with a stable id and a creation time.
// Rule: this is the layer's barrel of values for lib/ and the tests; types are imported from their
// files. The public API picks its names one by one in lib/index.ts.
export { Outbox, OUTBOX_DEFAULTS, DEAD_LETTER_FILE, ACKS_FILE, META_FILE, QUARANTINE_DIR, OUTBOX_FORMAT_VERSION } from './outbox';
export { HttpDelivery, DELIVERY_DEFAULTS } from './delivery';
export { StateDirLockedError, LOCK_FILE } from '../base/pid-lock';
export { alertUrl } from './alert-url';
export { backoffDelay, parseRetryAfter } from '../base/backoff';
