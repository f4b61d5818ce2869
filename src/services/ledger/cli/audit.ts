// `npm run audit`: recomputes every balance from the stored transactions and
// checks that each balance type sums to zero. Exits 1 on any mismatch.
// Uses the configured ledger database; with embedded PostgreSQL it joins the
// running server if Koban is up, or starts it for the duration of the audit.
import pg from 'pg';
import { loadConfig } from '../../../platform/config.ts';
import { createLogger } from '../../../platform/logger.ts';
import { type EmbeddedServer, embeddedServerUrl, startEmbeddedPostgres } from '../../../platform/postgres/embedded.ts';
import { createPool, databaseUrl } from '../../../platform/postgres/pool.ts';
import { LEDGER_DATABASE, PostgresLedgerStore } from '../store/postgres/postgres-ledger-store.ts';

const config = loadConfig();
const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
let embedded: EmbeddedServer | undefined;
let url = config.ledgerDatabaseUrl;
if (url === undefined) {
  const serverUrl = embeddedServerUrl(config.embeddedPostgresPort);
  if (!(await canConnect(serverUrl))) {
    embedded = await startEmbeddedPostgres({ dataDir: config.dataDir, port: config.embeddedPostgresPort, logger });
  }
  url = databaseUrl(serverUrl, LEDGER_DATABASE);
}

const store = new PostgresLedgerStore(createPool({ url, size: 2, applicationName: 'koban-audit', logger }));
let ok = false;
try {
  const report = await store.audit();
  ok = report.ok;
  console.log(JSON.stringify(report, null, 2));
  console.error(ok ? 'audit: OK — every balance matches its transactions and each balance type sums to zero' : 'audit: MISMATCH — see the report above');
} finally {
  await store.close();
  await embedded?.stop();
}
process.exitCode = ok ? 0 : 1;

async function canConnect(connectionString: string): Promise<boolean> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.end();
    return true;
  } catch {
    return false;
  }
}
