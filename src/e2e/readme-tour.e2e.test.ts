// Goal: the README's tour is true — each of its curl commands, run as written through bash against a freshly started `koban start`, answers the status and the body the README shows under it.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freePort } from '../platform/net.ts';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.ts';

const ROOT = path.join(import.meta.dirname, '..', '..');
const KOBAN = path.join(ROOT, 'src', 'cli', 'koban.ts');
/** The README marks each of the tour's code blocks with a comment before it that starts so. */
const TOUR_MARKER = '<!-- tour:';
/** The README's commands talk to the default port; the test's Koban listens on a free one. */
const README_ADDRESS = 'localhost:3000';
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 20_000;
const COMMAND_TIMEOUT_MS = 10_000;
/** Fewer commands than this means the tour was not found, not that it is short. */
const TOUR_COMMANDS_MIN = 20;

type Step = { command: string; line: number; status: number; headers: Array<[string, string]>; body: string | undefined; eventually: boolean };

/** A command whose comment line above says this reads what a consumer writes: it is asked again until it answers as shown, for up to EVENTUALLY_MS. */
const EVENTUALLY_NOTE = /a moment later/i;
const EVENTUALLY_MS = 15_000;
const EVENTUALLY_POLL_MS = 200;

/**
 * The tour's curl commands and what the README shows under each: `# 201 {…}`
 * (or `# HTTP/1.1 201 Created` for `curl -i`), then `# Name: value` headers,
 * then the body, continued on lines starting `#` and two spaces. `…` stands
 * for anything. A curl command without a status under it is an error.
 */
function parseTour(readme: string): Step[] {
  const lines = readme.split('\n');
  const steps: Step[] = [];
  let inTour = false;
  let marked = false;
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!;
    if (line.startsWith(TOUR_MARKER)) marked = true;
    else if (marked && line.startsWith('```sh')) [inTour, marked] = [true, false];
    else if (inTour && line.startsWith('```')) inTour = false;
    if (!inTour || !line.startsWith('curl ')) continue;
    const start = index;
    const eventually = EVENTUALLY_NOTE.test(lines[index - 1] ?? '') && (lines[index - 1] ?? '').startsWith('#');
    let command = line;
    // Continuation lines stay as written: bash joins them.
    while (command.endsWith('\\')) command = `${command}\n${lines[++index]!}`;
    const expectation: string[] = [];
    while (lines[index + 1]?.startsWith('#')) expectation.push(lines[++index]!);
    const [first, ...rest] = expectation;
    const statusLine = /^# (?:HTTP\/1\.1 )?(\d{3})(?: (.*))?$/.exec(first ?? '');
    assert.ok(statusLine, `README line ${start + 1}: the command is followed by the status it answers (# 200 …), not ${JSON.stringify(first)}`);
    const headers: Array<[string, string]> = [];
    let body = /^[[{]/.test(statusLine[2] ?? '') ? statusLine[2]! : undefined;
    for (const text of rest) {
      const header = /^# ([A-Za-z][A-Za-z0-9-]*): (.*)$/.exec(text);
      if (body === undefined && header) headers.push([header[1]!.toLowerCase(), header[2]!]);
      else if (body === undefined && /^# [[{]/.test(text)) body = text.slice(2);
      else if (body !== undefined && /^# {2,}\S/.test(text)) body += text.replace(/^# +/, '');
      else break; // a note: the body, if any, has ended
    }
    steps.push({ command, line: start + 1, status: Number(statusLine[1]), headers, body, eventually });
  }
  return steps;
}

/** The README's body with `…` as a wildcard, as an anchored pattern. */
function bodyPattern(shown: string): RegExp {
  return new RegExp(`^${shown.split('…').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[^]*?')}$`);
}

/** Runs one command as written through bash; curl also writes the status on a last line of its own. */
async function run(command: string, port: number): Promise<{ status: number; head: string; body: string }> {
  const script = `curl() { command curl --max-time ${COMMAND_TIMEOUT_MS / 1000} -w '\\n%{http_code}' "$@"; }\n${command.replaceAll(README_ADDRESS, `localhost:${port}`)}`;
  const child = spawn('bash', ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let errors = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  assert.equal(code, 0, `${command}\nexited ${code}: ${errors}`);
  const cut = output.lastIndexOf('\n');
  const status = Number(output.slice(cut + 1));
  let response = output.slice(0, cut);
  let head = '';
  if (/^HTTP\/1\.1 /.test(response)) {
    const end = response.indexOf('\r\n\r\n');
    [head, response] = [response.slice(0, end), response.slice(end + 4)];
  }
  return { status, head, body: response };
}

describe('the README tour', () => {
  let database: TestDatabase;
  let koban: ChildProcess | undefined;
  let port: number;
  let output = '';

  before(async () => {
    database = await createTestDatabase('readme_tour');
    port = await freePort();
    // One database for every service, as DATABASE_URL alone gives; nothing from the caller's environment leaks in.
    const { LEDGER_DATABASE_URL: _ledger, BUS_DATABASE_URL: _bus, KOBAN_BUS: _adapter, ...env } = process.env;
    koban = spawn(process.execPath, [KOBAN, 'start'], { env: { ...env, DATABASE_URL: database.url, PORT: String(port), LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
    koban.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    koban.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!output.includes('Koban is listening')) {
      if (koban.exitCode !== null) throw new Error(`Koban exited with ${koban.exitCode}:\n${output}`);
      if (Date.now() > deadline) throw new Error(`Koban did not start within ${START_TIMEOUT_MS} ms:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });

  after(async () => {
    if (koban && koban.exitCode === null) {
      const exited = new Promise((resolve) => koban!.once('exit', resolve));
      koban.kill('SIGTERM');
      const timer = setTimeout(() => koban!.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    await database?.drop();
  });

  test('every curl command answers the status and body the README shows', async () => {
    const steps = parseTour(await readFile(path.join(ROOT, 'README.md'), 'utf8'));
    assert.ok(steps.length >= TOUR_COMMANDS_MIN, `found the tour: ${steps.length} commands`);
    for (const step of steps) {
      let answer = await run(step.command, port);
      // What a consumer writes shows up a moment later: asked again until it does, within a bound.
      const deadline = Date.now() + EVENTUALLY_MS;
      while (step.eventually && Date.now() < deadline && !(answer.status === step.status && (step.body === undefined || bodyPattern(step.body).test(answer.body)))) {
        await new Promise((resolve) => setTimeout(resolve, EVENTUALLY_POLL_MS));
        answer = await run(step.command, port);
      }
      const where = `README line ${step.line}: ${step.command}\nanswered ${answer.status} ${answer.body}`;
      assert.equal(answer.status, step.status, where);
      for (const [name, value] of step.headers) {
        assert.ok(answer.head.toLowerCase().includes(`\r\n${name}: ${value.toLowerCase()}`), `${where}\nwith headers\n${answer.head}\nlacks ${name}: ${value}`);
      }
      if (step.body !== undefined) assert.match(answer.body, bodyPattern(step.body), where);
    }
  });

  test('the fields the README says make a repeat a 409 are exactly those the ledger names', async () => {
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
    const sentence = /a repeat with a different ([^]*?)\s+is\s+`409 idempotency_conflict`/.exec(readme)?.[1];
    assert.ok(sentence, 'the README lists the fields that make a repeat a conflict');
    const listed = [...sentence.matchAll(/`(\w+)`/g)].map(([, field]) => field!).sort();
    const submit = async (body: object) => {
      const response = await fetch(`http://127.0.0.1:${port}/v1/transactions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: response.status, body: (await response.json()) as { error?: { details?: { fields?: string[] } } } };
    };
    const user = { user_id: 'conflicts', balance_type: 'points' };
    for (const [id, amount] of [['conflicts-funds', 1000], ['conflicts-c1', -10], ['conflicts-c2', -10]] as const) {
      assert.equal((await submit({ ...user, transaction_id: id, type: amount > 0 ? 'add' : 'consume', amount: Math.abs(amount) })).status, 201);
    }
    // Per field: a first request, and a repeat that differs in that field alone.
    const cases: Record<string, [object, object]> = {
      type: [{ type: 'add' }, { type: 'consume' }],
      user_id: [{ type: 'add' }, { type: 'add', user_id: 'someone-else' }],
      amount: [{ type: 'add' }, { type: 'add', amount: 6 }],
      pending: [{ type: 'add', pending: true }, { type: 'add' }],
      pending_expires_at: [{ type: 'add', pending: true, pending_expires_at: '2030-01-01T00:00:00Z' }, { type: 'add', pending: true, pending_expires_at: '2030-01-02T00:00:00Z' }],
      expires_at: [{ type: 'add', expires_at: '2030-06-30T00:00:00Z' }, { type: 'add', expires_at: '2030-07-01T00:00:00Z' }],
      refund_of: [{ type: 'refund', refund_of: 'conflicts-c1' }, { type: 'refund', refund_of: 'conflicts-c2' }],
      force: [{ type: 'consume', force: true }, { type: 'consume' }],
      description: [{ type: 'add', description: 'first' }, { type: 'add', description: 'second' }],
      metadata: [{ type: 'add', metadata: { campaign: 'a' } }, { type: 'add', metadata: { campaign: 'b' } }],
    };
    for (const [field, [first, repeat]] of Object.entries(cases)) {
      const base = { ...user, transaction_id: `conflicts-${field}`, amount: 5 };
      assert.equal((await submit({ ...base, ...first })).status, 201, field);
      const refused = await submit({ ...base, ...repeat });
      assert.equal(refused.status, 409, `${field}: ${JSON.stringify(refused.body)}`);
      assert.deepEqual(refused.body.error?.details?.fields, [field]);
    }
    assert.deepEqual(listed, Object.keys(cases).sort(), 'the README names every field that makes a conflict, and only those');
  });
});

describe('parseTour', () => {
  test('reads statuses, headers and bodies, and refuses a command without a status', () => {
    const readme = [
      '<!-- tour: -->',
      '```sh',
      '# a note',
      "curl -si localhost:3000/a -d '{}' \\",
      "  -H 'x: y'",
      '# HTTP/1.1 200 OK',
      '# Idempotent-Replayed: true',
      '# {"a":1,',
      '#  "b":…}',
      '# a note after',
      'curl -s localhost:3000/b',
      '# 404 {"error":…}',
      '```',
      '```sh',
      'curl -s localhost:3000/not-in-the-tour',
      '```',
    ].join('\n');
    assert.deepEqual(parseTour(readme), [
      { command: "curl -si localhost:3000/a -d '{}' \\\n  -H 'x: y'", line: 4, status: 200, headers: [['idempotent-replayed', 'true']], body: '{"a":1,"b":…}', eventually: false },
      { command: 'curl -s localhost:3000/b', line: 11, status: 404, headers: [], body: '{"error":…}', eventually: false },
    ]);
    assert.throws(() => parseTour('<!-- tour: -->\n```sh\ncurl -s localhost:3000/c\n# just a note\n```'), /followed by the status/);
    assert.deepEqual(
      parseTour('<!-- tour: -->\n```sh\n# A moment later, the consumer has written it:\ncurl -s localhost:3000/d\n# 200 {}\n```').map((step) => step.eventually),
      [true],
    );
    assert.match('{"a":1,"b":{"c":2}}', bodyPattern('{"a":1,"b":…}'));
    assert.doesNotMatch('{"a":2,"b":{"c":2}}', bodyPattern('{"a":1,"b":…}'));
  });
});

describe('the README and docs/ link only to what the repository holds', () => {
  test('every relative link and every file path named in code spans exists inside the repository', async () => {
    const { readdir, access } = await import('node:fs/promises');
    const files = ['README.md', ...(await readdir(path.join(ROOT, 'docs'))).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)];
    const missing: string[] = [];
    for (const file of files) {
      const text = await readFile(path.join(ROOT, file), 'utf8');
      const targets = [
        ...[...text.matchAll(/\]\(([^)\s]+)\)/g)].filter(([, target]) => !/^(https?:|#)/.test(target!)).map(([, target]) => path.join(path.dirname(file), target!.split('#')[0]!)),
        // Paths the text names: `src/…`, `docs/…`, `test/…`, `bench/…`, `../…`, placeholders (<name>, …, *) aside.
        ...[...text.matchAll(/`((?:src|docs|test|bench|\.\.)\/[^`\s]*)`/g)].map(([, named]) => named!).filter((named) => !/[<>…*]/.test(named)),
      ];
      for (const target of targets) {
        const resolved = path.resolve(ROOT, target);
        if (!resolved.startsWith(ROOT + path.sep)) missing.push(`${file}: ${target} is outside the repository`);
        else await access(resolved).catch(() => missing.push(`${file}: ${target} does not exist`));
      }
    }
    assert.deepEqual(missing, []);
  });
});
