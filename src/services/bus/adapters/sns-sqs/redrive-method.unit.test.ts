// Goal: a redrive of chosen ids always goes message by message; a redrive of all uses a move task only where SQS has one and none is running; a broker lacking the action is told apart from one failing for a passing reason.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isUnsupportedOperation, redriveMethod } from './redrive-method.ts';

const named = (name: string, message = 'x') => Object.assign(new Error(message), { name });

test('chosen ids: per message, whatever the broker offers', () => {
  for (const supported of [true, false]) for (const running of [true, false]) assert.equal(redriveMethod(['a'], { supported, running }), 'per-message');
  assert.equal(redriveMethod([], { supported: true, running: false }), 'per-message', 'an empty list names no dead letter; it is not "all"');
});

test('all: a move task where the broker has them, message by message where it does not', () => {
  assert.equal(redriveMethod(undefined, { supported: true, running: false }), 'move-task');
  assert.equal(redriveMethod(undefined, { supported: false, running: false }), 'per-message');
});

test('all, with a move task of that queue still running (SQS runs one at a time): per message', () => {
  assert.equal(redriveMethod(undefined, { supported: true, running: true }), 'per-message');
});

test('a broker lacking the action is recognised by the error name or its "unknown action" message; throttling, access and network errors are not', () => {
  assert.ok(isUnsupportedOperation(named('InvalidAction', 'Unknown action: StartMessageMoveTask')));
  assert.ok(isUnsupportedOperation(named('UnsupportedOperation')));
  assert.ok(isUnsupportedOperation(named('AWS.SimpleQueueService.UnsupportedOperation')));
  assert.ok(isUnsupportedOperation(named('SomeEmulatorError', 'Unknown operation StartMessageMoveTask')));
  assert.ok(!isUnsupportedOperation(named('RequestThrottled')));
  assert.ok(!isUnsupportedOperation(named('AccessDeniedException', 'not authorized to perform: sqs:StartMessageMoveTask')));
  assert.ok(!isUnsupportedOperation(named('TimeoutError', 'socket hang up')));
  assert.ok(!isUnsupportedOperation('InvalidAction'));
});
