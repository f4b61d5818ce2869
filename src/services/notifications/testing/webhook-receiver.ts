// A real webhook endpoint for the tests: an HTTP server on 127.0.0.1 that
// records every request, checks its signature with node:crypto on its own
// (not with the product's code), and answers as the test sets it: 204, 503,
// or never (hang). It can be closed (connections refused) and opened again
// on the same port. Test-only: nothing in the product imports it.
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type ReceivedRequest = Readonly<{
  atMs: number;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** Whether Koban-Signature is `t=<unix>,v1=<hex>` with the HMAC-SHA256 of `t.body` under the secret. */
  signatureValid: boolean;
  /** What it was answered; undefined while it hangs (or if it never was). */
  status: number | undefined;
}>;

export type ReceiverMode = 'ok' | 'unavailable' | 'hang';

export class WebhookReceiver {
  readonly #secret: string;
  readonly #requests: Array<{ -readonly [K in keyof ReceivedRequest]: ReceivedRequest[K] }> = [];
  readonly #hanging = new Set<http.ServerResponse>();
  #server: http.Server | undefined;
  #port = 0;
  mode: ReceiverMode = 'ok';

  private constructor(secret: string) {
    this.#secret = secret;
  }

  static async start(secret: string): Promise<WebhookReceiver> {
    const receiver = new WebhookReceiver(secret);
    await receiver.open();
    return receiver;
  }

  get requests(): readonly ReceivedRequest[] {
    return this.#requests;
  }

  /** Requests still waiting for an answer (mode `hang`). */
  get hanging(): number {
    return this.#hanging.size;
  }

  url(path = '/hook'): string {
    return `http://127.0.0.1:${this.#port}${path}`;
  }

  /** Requests whose Koban-Delivery-Id is `deliveryId`. */
  of(deliveryId: string): ReceivedRequest[] {
    return this.#requests.filter((request) => request.headers['koban-delivery-id'] === deliveryId);
  }

  /** Listens (on the port it had before, if it had one). */
  async open(): Promise<void> {
    const server = http.createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const entry = {
          atMs: performance.now(),
          path: request.url ?? '',
          headers: request.headers,
          body,
          signatureValid: this.#verify(request.headers['koban-signature'], body),
          status: undefined as number | undefined,
        };
        this.#requests.push(entry);
        if (this.mode === 'hang') {
          this.#hanging.add(response);
          response.on('close', () => this.#hanging.delete(response));
          return;
        }
        entry.status = this.mode === 'ok' ? 204 : 503;
        response.writeHead(entry.status).end();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#port, '127.0.0.1', () => resolve());
    });
    this.#port = (server.address() as AddressInfo).port;
    this.#server = server;
  }

  /** Drops the connections of hanging requests (the sender sees a reset), keeps listening. */
  dropHanging(): void {
    for (const response of this.#hanging) response.destroy();
  }

  /** Stops listening and drops every connection, hanging ones included: from now on connections are refused. */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server === undefined) return;
    for (const response of this.#hanging) response.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #verify(header: string | string[] | undefined, body: string): boolean {
    const match = typeof header === 'string' ? /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header) : null;
    if (!match) return false;
    const expected = createHmac('sha256', this.#secret).update(`${match[1]}.${body}`).digest();
    const ageSeconds = Math.abs(Date.now() / 1000 - Number(match[1]));
    return ageSeconds < 300 && timingSafeEqual(expected, Buffer.from(match[2]!, 'hex'));
  }
}

/** Polls until `check` returns something truthy, and returns it; fails naming `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 15_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
