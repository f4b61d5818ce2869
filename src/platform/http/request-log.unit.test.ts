// Goal: requests are logged sparingly: 5xx at error, slow ones at warn, a sample at info, every one at debug, and nothing else at info.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { KobanError } from '../errors.ts';
import { createHttpServer, type RequestLogOptions } from './server.ts';

/** The slow route waits twice this; fast routes stay far under it even on a loaded machine (25 ms was not). */
const SLOW_MS = 500;

async function serverLogging(level: string, requestLog: RequestLogOptions) {
  const lines: Array<{ level: number; msg: string; url?: string; status?: number; elapsedMs?: number; service?: string }> = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  const logger = pino({ level }, stream).child({ service: 'widget' });
  const app = await createHttpServer({ logger, bodyLimitBytes: 1024, title: 't', version: '0', description: 't', requestLog });
  app.get('/ok', async () => ({ ok: true }));
  app.get('/slow', async () => {
    await new Promise((resolve) => setTimeout(resolve, SLOW_MS * 2));
    return { ok: true };
  });
  app.get('/boom', async () => {
    throw new Error('boom');
  });
  app.get('/unavailable', async () => {
    throw new KobanError('unavailable', 'down');
  });
  app.get('/missing', async () => {
    throw new KobanError('not_found', 'no such thing');
  });
  await app.ready();
  const requests = lines.length;
  return {
    async get(url: string) {
      return (await app.inject({ method: 'GET', url })).statusCode;
    },
    /** Every line since start-up but the error handler's own 'unhandled error' (with the stack). */
    requestLines: () => lines.slice(requests).filter((line) => line.msg !== 'unhandled error'),
    close: () => app.close(),
  };
}

test('at info with no sample: only 5xx (error) and slow requests (warn) are logged, with the service name', async () => {
  const server = await serverLogging('info', { slowMs: SLOW_MS, sampleRate: 0 });
  try {
    for (let i = 0; i < 20; i++) assert.equal(await server.get('/ok'), 200);
    assert.equal(await server.get('/missing'), 404);
    assert.equal(await server.get('/slow'), 200);
    assert.equal(await server.get('/boom'), 500);
    assert.equal(await server.get('/unavailable'), 503);
    const logged = server.requestLines().map((line) => [line.url, line.status, line.level, line.service]);
    assert.deepEqual(logged, [
      ['/slow', 200, 40, 'widget'],
      ['/boom', 500, 50, 'widget'],
      ['/unavailable', 503, 50, 'widget'],
    ]);
    assert.ok(server.requestLines()[0]!.elapsedMs! >= SLOW_MS);
  } finally {
    await server.close();
  }
});

test('a sample rate of 1 logs every request at info; at warn the sample is off', async () => {
  const all = await serverLogging('info', { slowMs: 60_000, sampleRate: 1 });
  const quiet = await serverLogging('warn', { slowMs: 60_000, sampleRate: 1 });
  try {
    for (let i = 0; i < 5; i++) {
      await all.get('/ok');
      await quiet.get('/ok');
    }
    assert.deepEqual(all.requestLines().map((line) => line.level), [30, 30, 30, 30, 30]);
    assert.deepEqual(quiet.requestLines(), []);
  } finally {
    await all.close();
    await quiet.close();
  }
});

test('at debug every request is logged, once', async () => {
  const server = await serverLogging('debug', { slowMs: 60_000, sampleRate: 0 });
  try {
    await server.get('/ok');
    await server.get('/missing');
    assert.deepEqual(server.requestLines().map((line) => [line.url, line.level]), [
      ['/ok', 20],
      ['/missing', 20],
    ]);
  } finally {
    await server.close();
  }
});
