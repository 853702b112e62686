// Every network namespace of the host: discovery (lib/netns/discover.ts) and one scan of all of them
// (lib/netns/scanner.ts); the owner of a process from its cgroups (lib/netns/cgroup.ts).
export { discoverNetworkNamespaces, type DiscoverOptions, type NetnsEntry } from './discover';
export { NamespaceScanner, type NamespaceScan, type NamespaceScannerOptions, type ScanCallOptions } from './scanner';
export { parseCgroupFile, parseCgroupPath, type CgroupOwner } from './cgroup';
