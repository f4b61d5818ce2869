// From an event to a notice and its deliveries: which event it is, whose it
// is, what it says in the user's language, and which channels carry it.
import type { CloudEvent } from '../../../contracts/events/envelope.ts';
import { ACCOUNTS_TOPIC, parseAccountEvent } from '../../../contracts/events/accounts.ts';
import { parsePaymentEvent, PAYMENTS_TOPIC } from '../../../contracts/events/payments.ts';
import { invalidRequest } from '../../../platform/errors.ts';
import type { Language } from './limits.ts';
import { type NotifiableEvent, renderNotice } from './templates.ts';

/** The topics notices are made from. */
export const NOTIFIED_TOPICS = [PAYMENTS_TOPIC, ACCOUNTS_TOPIC] as const;
export type NotifiedTopic = (typeof NOTIFIED_TOPICS)[number];

/** A notice before it is stored: the store gives it its id and time, once per event. */
export type NoticeDraft = Readonly<{
  topic: NotifiedTopic;
  event_id: string;
  user_id: string;
  type: string;
  title: string;
  body: string;
  language: Language;
}>;

export type Notice = NoticeDraft & Readonly<{ notice_id: string; created_at: string }>;

/** What a user chose; absent fields fall back to the service's defaults. */
export type UserSettings = Readonly<{ language: Language | null; webhook_url: string | null }>;

export type ChannelName = 'log' | 'webhook';
/**
 * A delivery to make: the channel and, for a webhook, where to, and whether
 * the user chose that endpoint (then it may reach public addresses only,
 * unless the operator allows private ones) or the operator did.
 */
export type PlannedDelivery = Readonly<{ channel: ChannelName; target: string | null; user_endpoint: boolean }>;

/** Throws `invalid_request` (a poison message: the bus retries, then dead-letters it) unless the event is one notices are made from. */
export function parseNotifiable(topic: string, event: CloudEvent): NotifiableEvent {
  if (topic === PAYMENTS_TOPIC) return { topic, event: parsePaymentEvent(event) };
  if (topic === ACCOUNTS_TOPIC) return { topic, event: parseAccountEvent(event) };
  throw invalidRequest('topic', `notifications do not read topic ${topic.slice(0, 64)}`);
}

export function userOf(notifiable: NotifiableEvent): string {
  return notifiable.event.data.user_id;
}

export function languageFor(settings: UserSettings | undefined, defaultLanguage: Language): Language {
  return settings?.language ?? defaultLanguage;
}

export function draftNotice(notifiable: NotifiableEvent, language: Language): NoticeDraft {
  const { title, body } = renderNotice(notifiable, language);
  return { topic: notifiable.topic, event_id: notifiable.event.id, user_id: userOf(notifiable), type: notifiable.event.type, title, body, language };
}

/** Every notice is logged; it goes to the user's webhook, or else the global one, when there is one. */
export function planDeliveries(settings: UserSettings | undefined, globalWebhookUrl: string | undefined): PlannedDelivery[] {
  const own = settings?.webhook_url ?? null;
  const webhook = own ?? globalWebhookUrl;
  return [
    { channel: 'log', target: null, user_endpoint: false },
    ...(webhook === undefined ? [] : [{ channel: 'webhook' as const, target: webhook, user_endpoint: own !== null }]),
  ];
}

/** The webhook's body: fixed when the delivery is planned, so every attempt sends the same bytes. */
export function webhookBody(notice: Notice, deliveryId: string): string {
  return JSON.stringify({
    delivery_id: deliveryId,
    type: 'notice.created',
    notice: {
      notice_id: notice.notice_id,
      event_id: notice.event_id,
      user_id: notice.user_id,
      type: notice.type,
      title: notice.title,
      body: notice.body,
      language: notice.language,
      created_at: notice.created_at,
    },
  });
}
