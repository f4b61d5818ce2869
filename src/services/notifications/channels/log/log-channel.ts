// The log channel: each notice is one pino line (`notice delivered`), for
// operators and for a log pipeline that forwards notices elsewhere.
import type { Logger } from 'pino';
import type { AttemptResult } from '../../domain/delivery.ts';
import type { ChannelMessage, NotificationChannel } from '../channel.ts';

export class LogChannel implements NotificationChannel {
  readonly name = 'log' as const;
  readonly #logger: Logger;

  constructor(logger: Logger) {
    this.#logger = logger.child({ channel: 'log' });
  }

  async deliver(message: ChannelMessage): Promise<AttemptResult> {
    try {
      const { notice } = JSON.parse(message.payload) as { notice: unknown };
      this.#logger.info({ delivery_id: message.delivery_id, event_id: message.event_id, user_id: message.user_id, notice }, 'notice delivered');
      return { ok: true };
    } catch (error) {
      return { ok: false, error: `log channel: ${error instanceof Error ? error.message : String(error)}` };
    }
  }
}
