// The arrows of the architecture (README, "How it is built"), checked in CI by
// `npm run depcheck`. Test files may use the test harness; product code never.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'platform-imports-no-service',
      comment: 'src/platform/ is what every service uses: it knows no service, no composition root, no contract of one service.',
      severity: 'error',
      from: { path: '^src/platform/' },
      to: { path: '^src/(services|cli)/' },
    },
    {
      name: 'contracts-import-no-service',
      comment: 'src/contracts/ is the published language: types, schemas, topic names; it depends on no service.',
      severity: 'error',
      from: { path: '^src/contracts/' },
      to: { path: '^src/(services|cli)/' },
    },
    {
      name: 'service-reaches-another-only-through-its-clients',
      comment: 'A service imports another service only through that service\'s clients/ folder (or the contracts).',
      severity: 'error',
      from: { path: '^src/services/([^/]+)/' },
      to: { path: '^src/services/([^/]+)/', pathNot: ['^src/services/$1/', '^src/services/[^/]+/clients/'] },
    },
    {
      name: 'adapters-do-not-import-each-other',
      comment: 'Adapters of one port live in folders of their own and share only what the service keeps beside them.',
      severity: 'error',
      from: { path: '^src/services/[^/]+/(adapters|store)/([^/]+)/' },
      to: { path: '^src/services/[^/]+/(adapters|store)/([^/]+)/', pathNot: '^src/services/[^/]+/$1/$2/' },
    },
    {
      name: 'adapters-do-not-reach-each-other',
      comment: 'Nor through the code they share (domain/, registry/): an adapter runs, and a new one is written, without another one loaded.',
      severity: 'error',
      from: { path: '^src/services/([^/]+)/(adapters|store)/([^/]+)/', pathNot: '\\.test\\.ts$' },
      // No group in `path`: dependency-cruiser 18 checks a reachable rule's `path` again without the groups.
      to: { path: '^src/services/[^/]+/(adapters|store)/[^/]+/', pathNot: '^src/services/$1/$2/$3/', reachable: true },
    },
    {
      name: 'only-the-composition-root-imports-cli',
      comment: 'src/cli/ wires services together; nothing else imports it.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/(cli|e2e)/' },
      to: { path: '^src/cli/' },
    },
    {
      name: 'product-code-imports-no-tests-or-benchmarks',
      comment: 'src/ (test files aside) never imports test/ or bench/.',
      severity: 'error',
      from: { path: '^src/', pathNot: '\\.test\\.ts$' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'benchmarks-import-no-tests',
      severity: 'error',
      from: { path: '^bench/' },
      to: { path: '^test/' },
    },
    {
      name: 'no-circular',
      severity: 'error',
      from: { pathNot: '\\.test\\.ts$' },
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // TypeScript 7 has no compiler API yet; swc parses the sources instead.
    parser: 'swc',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.json'], exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'], mainFields: ['module', 'main'] },
  },
};
