// What owns a process, read from the text of /proc/PID/cgroup. Rule: the Kubernetes pod UID and the
// container id are found by the shape of the path components, whichever cgroup version, driver and
// runtime wrote them, and wherever in the path they sit (a reader in its own cgroup namespace sees
// `/../../kubepods…`):
// - pod: a component `pod<uid>` (cgroupfs driver: `/kubepods/burstable/pod<uid>/…`, Guaranteed pods
//   without the QoS level) or ending in `-pod<uid>.slice` (systemd driver:
//   `kubepods-burstable-pod<uid_with_underscores>.slice`). The systemd driver writes the UID's dashes
//   as underscores; they are turned back into dashes. A UID is a UUID, or 32 hex digits (a static
//   pod's config hash).
// - container: the deepest component that is 64 hex digits, alone (`/kubepods/…/pod<uid>/<id>`,
//   `/docker/<id>`) or as `<runtime>-<id>.scope` / `<runtime>-<id>` (cri-containerd-, docker-,
//   crio-, libpod-). `crio-conmon-<id>` is CRI-O's monitor process, not the container: skipped.
// cgroup v1 lists one line per hierarchy; v2 one `0::` line. The first line that names a pod wins
// (all lines of one process name the same pod); the container id is taken from that same line.

export interface CgroupOwner {
  /** Kubernetes pod UID (with dashes), when the process is in a pod's cgroup. */
  podUid?: string;
  /** Container id (64 hex digits), when the process is in a container's cgroup. */
  containerId?: string;
}

const UUID_UNDERSCORE = /^[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}$/;
const HASH32 = /^[0-9a-f]{32}$/;
const CONTAINER_ID = /^(?:(?:cri-containerd|containerd|docker|crio|libpod)-)?([0-9a-f]{64})(?:\.scope)?$/;

/** The pod UID a path component names, if any (dashes restored). */
function podUidOf(component: string): string | undefined {
  let rest: string | undefined;
  if (component.startsWith('pod')) rest = component.slice(3);
  else {
    const i = component.lastIndexOf('-pod');
    if (i >= 0 && component.endsWith('.slice') && component.startsWith('kubepods')) rest = component.slice(i + 4, -'.slice'.length);
  }
  if (rest === undefined) return undefined;
  const uid = rest.toLowerCase();
  if (UUID_UNDERSCORE.test(uid)) return uid.replaceAll('_', '-');
  if (HASH32.test(uid)) return uid;
  return undefined;
}

/** The owner named by one cgroup path. */
export function parseCgroupPath(path: string): CgroupOwner {
  const out: CgroupOwner = {};
  for (const component of path.split('/')) {
    if (component.startsWith('crio-conmon-')) continue;
    const uid = podUidOf(component);
    if (uid !== undefined) out.podUid = uid;
    const m = CONTAINER_ID.exec(component);
    if (m) out.containerId = m[1]; // the deepest one wins
  }
  return out;
}

/** The owner named by the text of /proc/PID/cgroup (see the rule at the top). */
export function parseCgroupFile(text: string): CgroupOwner {
  let fallback: CgroupOwner = {};
  for (const line of text.split('\n')) {
    // hierarchy-ID:controller-list:path; the path may itself hold ':'.
    const first = line.indexOf(':');
    const second = first < 0 ? -1 : line.indexOf(':', first + 1);
    if (second < 0) continue;
    const owner = parseCgroupPath(line.slice(second + 1));
    if (owner.podUid !== undefined) return owner;
    if (fallback.containerId === undefined && owner.containerId !== undefined) fallback = owner;
  }
  return fallback;
}
