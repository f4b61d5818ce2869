// Sends a network its answer: the stored bytes, marked on a resend.
import type { FastifyReply } from 'fastify';
import { REPLAY_HEADER } from '../../../platform/http/openapi.ts';
import type { Answer } from '../service.ts';

/** Networks answer 200 either way, so the header is always there: `true` on a resend, `false` on a first answer. */
export const networkReplayHeaders = {
  [REPLAY_HEADER]: { type: 'string', enum: ['true', 'false'], description: '`true` when this answers a resend: the body is the stored answer to the first, byte for byte' },
} as const;

export function sendAnswer(reply: FastifyReply, answer: Answer): FastifyReply {
  void reply.header(REPLAY_HEADER, answer.replayed ? 'true' : 'false');
  // A string with its type set is sent as is: byte for byte what was stored.
  return reply.code(answer.status).type('application/json; charset=utf-8').send(answer.body);
}
