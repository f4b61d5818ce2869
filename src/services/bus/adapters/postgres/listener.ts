// A LISTEN connection that survives its server going away.
import pg from 'pg';
import type { Logger } from 'pino';
import { POOL_CONNECT_TIMEOUT_MS } from '../../../../platform/postgres/pool.ts';
import { BROKER_RETRY_INITIAL_MS, BROKER_RETRY_MAX_MS } from '../../domain/limits.ts';
import { brokerRetryDelayMs } from '../../../../platform/wakeup.ts';

/**
 * One LISTEN connection. When it drops it reconnects with backoff and then
 * calls back with no payload, since notifications sent meanwhile were lost:
 * whoever listens should look for work.
 */
export class PgListener {
  readonly #url: string;
  readonly #channel: string;
  readonly #logger: Logger;
  readonly #onNotify: (payload: string | undefined) => void;
  #client: pg.Client | undefined;
  #closed = false;
  #failures = 0;
  #reconnectTimer: NodeJS.Timeout | undefined;

  constructor(url: string, channel: string, logger: Logger, onNotify: (payload: string | undefined) => void) {
    this.#url = url;
    this.#channel = channel;
    this.#logger = logger.child({ component: 'pg-listener', channel });
    this.#onNotify = onNotify;
    void this.#connect();
  }

  async #connect(): Promise<void> {
    if (this.#closed) return;
    const client = new pg.Client({ connectionString: this.#url, connectionTimeoutMillis: POOL_CONNECT_TIMEOUT_MS, application_name: 'koban-listen' });
    client.on('notification', (message) => this.#onNotify(message.payload));
    client.on('error', (error) => {
      this.#logger.warn({ err: error }, 'LISTEN connection failed; reconnecting');
      this.#scheduleReconnect(client);
    });
    client.on('end', () => this.#scheduleReconnect(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${client.escapeIdentifier(this.#channel)}`);
      if (this.#closed) {
        await client.end().catch(() => undefined);
        return;
      }
      this.#client = client;
      if (this.#failures > 0) this.#logger.info('LISTEN connection restored');
      this.#failures = 0;
      this.#onNotify(undefined);
    } catch (error) {
      this.#logger.warn({ err: error }, 'LISTEN connection could not be opened; retrying');
      this.#scheduleReconnect(client);
    }
  }

  #scheduleReconnect(client: pg.Client): void {
    if (this.#closed || this.#reconnectTimer !== undefined) return;
    if (this.#client !== undefined && this.#client !== client) return;
    this.#client = undefined;
    client.removeAllListeners('end');
    void client.end().catch(() => undefined);
    this.#failures += 1;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      void this.#connect();
    }, brokerRetryDelayMs(this.#failures, BROKER_RETRY_INITIAL_MS, BROKER_RETRY_MAX_MS));
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#reconnectTimer);
    const client = this.#client;
    this.#client = undefined;
    if (client) {
      client.removeAllListeners('end');
      await client.end().catch(() => undefined);
    }
  }
}

