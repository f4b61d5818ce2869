// The notifications store port: what the service needs from its database,
// nothing more. One adapter: store/postgres/.
import type { DeliveryOutcome } from '../domain/delivery.ts';
import type { ChannelName, Notice, UserSettings } from '../domain/notice.ts';

export type StoredNotice = Notice & Readonly<{ seq: number }>;

/** `user_endpoint`: the target is the endpoint its user chose, not the operator's global one. */
export type NewDelivery = Readonly<{ delivery_id: string; channel: ChannelName; target: string | null; user_endpoint: boolean; payload: string }>;

/** A delivery claimed for one attempt: its lease runs until the attempt is settled or it lapses. */
export type ClaimedDelivery = Readonly<{
  seq: number;
  delivery_id: string;
  channel: ChannelName;
  target: string | null;
  /** Whether the target is the endpoint its user chose. */
  user_endpoint: boolean;
  payload: string;
  /** This attempt's number, 1-based. */
  attempt: number;
  event_id: string;
  user_id: string;
}>;

export type DeadDelivery = Readonly<{
  seq: number;
  delivery_id: string;
  notice_id: string;
  event_id: string;
  user_id: string;
  channel: ChannelName;
  target: string | null;
  attempts: number;
  last_error: string | null;
  dead_lettered_at: string;
  redrives: number;
}>;

export interface NotificationStore {
  userSettings(userId: string): Promise<UserSettings | undefined>;
  putUserSettings(userId: string, settings: UserSettings, now: Date): Promise<UserSettings>;
  /**
   * Stores the notice and its deliveries in one transaction, unless the event
   * already has a notice: then nothing changes. Resolves whether it stored.
   */
  recordNotice(notice: Notice, deliveries: readonly NewDelivery[]): Promise<boolean>;
  /** A user's notices, newest first, older than `beforeSeq` if given. */
  notices(userId: string, beforeSeq: number | undefined, rowsMax: number): Promise<StoredNotice[]>;
  /** Takes up to `limit` due deliveries for one attempt each, leased until `leaseUntil`. */
  claimDue(now: Date, limit: number, leaseUntil: Date): Promise<ClaimedDelivery[]>;
  /** When the next pending delivery is due (undefined if none). */
  nextDueAt(): Promise<Date | undefined>;
  /** Records how attempt `attempt` ended; ignored if the delivery moved on meanwhile (its lease lapsed and another took it). */
  settle(seq: number, attempt: number, outcome: DeliveryOutcome): Promise<void>;
  /** Dead deliveries, oldest first, after `afterSeq` if given. */
  deadLetters(afterSeq: number | undefined, rowsMax: number): Promise<DeadDelivery[]>;
  /** Makes dead deliveries (those ids, or the oldest `limit`) due again with a fresh attempt count. */
  redrive(deliveryIds: readonly string[] | undefined, now: Date, limit: number): Promise<number>;
  close(): Promise<void>;
}
