// The notifications service: turns a delivered event into one notice and its
// pending deliveries (one transaction, then the bus handler acks — nothing
// slow happens there), and answers the reads: a user's notices, their
// settings, the dead deliveries and their redrive.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Delivery } from '../../contracts/bus/event-bus.ts';
import type { Clock } from '../../platform/clock.ts';
import { decodeCursor, encodeCursor } from '../../platform/cursor.ts';
import { invalidRequest } from '../../platform/errors.ts';
import { nonPublicHost } from '../../platform/net-policy.ts';
import type { DeliveryWorker } from './delivery-worker.ts';
import { type Language, REDRIVE_IDS_MAX } from './domain/limits.ts';
import { draftNotice, languageFor, type Notice, type NotifiedTopic, parseNotifiable, planDeliveries, userOf, webhookBody } from './domain/notice.ts';
import type { DeadDelivery, NewDelivery, NotificationStore } from './store/notification-store.ts';

export type NoticeView = Readonly<{ notice_id: string; event_id: string; type: string; title: string; body: string; language: Language; created_at: string }>;
export type NoticePage = { data: NoticeView[]; next_cursor: string | null };
export type SettingsView = Readonly<{ user_id: string; language: Language; webhook_url: string | null }>;
export type DeadLetterView = Omit<DeadDelivery, 'seq'>;
export type DeadLetterPage = { data: DeadLetterView[]; next_cursor: string | null };

export class NotificationService {
  readonly #store: NotificationStore;
  readonly #worker: DeliveryWorker;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #defaultLanguage: Language;
  readonly #globalWebhookUrl: string | undefined;
  readonly #userWebhookPrivateAllowed: boolean;

  constructor(options: {
    store: NotificationStore;
    worker: DeliveryWorker;
    clock: Clock;
    logger: Logger;
    defaultLanguage: Language;
    /** Every user's notices go here unless they set their own (NOTIFICATIONS_WEBHOOK_URL). */
    globalWebhookUrl: string | undefined;
    /** Whether a user's own webhook may point at non-public addresses (NOTIFICATIONS_USER_WEBHOOK_PRIVATE_ALLOWED). */
    userWebhookPrivateAllowed: boolean;
  }) {
    this.#store = options.store;
    this.#worker = options.worker;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#defaultLanguage = options.defaultLanguage;
    this.#globalWebhookUrl = options.globalWebhookUrl;
    this.#userWebhookPrivateAllowed = options.userWebhookPrivateAllowed;
  }

  /**
   * The bus handler of both subscriptions. A poison event throws
   * `invalid_request` (the bus retries it, then dead-letters it); a redelivered
   * one finds its notice and changes nothing.
   */
  async handle(topic: NotifiedTopic, delivery: Delivery): Promise<void> {
    const notifiable = parseNotifiable(topic, delivery.event);
    const settings = await this.#store.userSettings(userOf(notifiable));
    const notice: Notice = {
      ...draftNotice(notifiable, languageFor(settings, this.#defaultLanguage)),
      notice_id: randomUUID(),
      created_at: this.#clock.now().toISOString(),
    };
    const deliveries: NewDelivery[] = planDeliveries(settings, this.#globalWebhookUrl)
      .filter((planned) => this.#worker.has(planned.channel))
      .map((planned) => {
        const deliveryId = randomUUID();
        return { delivery_id: deliveryId, channel: planned.channel, target: planned.target, user_endpoint: planned.user_endpoint, payload: webhookBody(notice, deliveryId) };
      });
    const stored = await this.#store.recordNotice(notice, deliveries);
    if (stored) this.#worker.wake();
    else this.#logger.debug({ topic, event_id: notice.event_id }, 'event already has its notice');
  }

  async notices(userId: string, query: { limit: number; cursor?: string | undefined }): Promise<NoticePage> {
    const before = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    const rows = await this.#store.notices(userId, before, query.limit + 1);
    const page = rows.slice(0, query.limit);
    return {
      data: page.map(({ notice_id, event_id, type, title, body, language, created_at }) => ({ notice_id, event_id, type, title, body, language, created_at })),
      next_cursor: rows.length > query.limit ? encodeCursor(page.at(-1)!.seq) : null,
    };
  }

  async settings(userId: string): Promise<SettingsView> {
    const stored = await this.#store.userSettings(userId);
    return { user_id: userId, language: languageFor(stored, this.#defaultLanguage), webhook_url: stored?.webhook_url ?? null };
  }

  /**
   * Replaces the user's settings; a webhook needs the signing secret, or it
   * could never be sent, and must not name a non-public address or localhost
   * (a name that resolves to one is refused when sending, by the channel).
   */
  async putSettings(userId: string, input: { language: Language; webhook_url?: string | null | undefined }): Promise<SettingsView> {
    const webhookUrl = input.webhook_url ?? null;
    if (webhookUrl !== null && !this.#worker.has('webhook')) {
      throw invalidRequest('webhook_url', 'webhooks are off in this deployment: set NOTIFICATIONS_WEBHOOK_SECRET to sign them, then set a webhook_url', { in: 'body' });
    }
    if (webhookUrl !== null) {
      const url = URL.parse(webhookUrl);
      if (url === null) throw invalidRequest('webhook_url', 'webhook_url is not a valid URL: its host or port cannot be parsed', { in: 'body' });
      const refused = this.#userWebhookPrivateAllowed ? undefined : nonPublicHost(url.hostname);
      if (refused !== undefined) {
        throw invalidRequest('webhook_url', `webhook_url must reach a public address, and its host is ${refused}: loopback, private, link-local and other special-purpose addresses are refused`, { in: 'body' });
      }
    }
    const stored = await this.#store.putUserSettings(userId, { language: input.language, webhook_url: webhookUrl }, this.#clock.now());
    return { user_id: userId, language: stored.language ?? this.#defaultLanguage, webhook_url: stored.webhook_url };
  }

  async deadLetters(query: { limit: number; cursor?: string | undefined }): Promise<DeadLetterPage> {
    const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    const rows = await this.#store.deadLetters(after, query.limit + 1);
    const page = rows.slice(0, query.limit);
    return { data: page.map(({ seq: _seq, ...row }) => row), next_cursor: rows.length > query.limit ? encodeCursor(page.at(-1)!.seq) : null };
  }

  /** Sends dead deliveries (those ids, or the oldest REDRIVE_IDS_MAX) again, with a fresh attempt count. */
  async redrive(ids: readonly string[] | undefined): Promise<{ redriven: number }> {
    const redriven = await this.#store.redrive(ids, this.#clock.now(), REDRIVE_IDS_MAX);
    if (redriven > 0) this.#worker.wake();
    return { redriven };
  }
}
