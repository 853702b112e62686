declare module 'node-gyp-build' {
  function nodeGypBuild(dir: string): unknown;
  namespace nodeGypBuild {
    /** The path of the addon file nodeGypBuild(dir) would load; throws when none fits. */
    function resolve(dir: string): string;
  }
  export = nodeGypBuild;
}
