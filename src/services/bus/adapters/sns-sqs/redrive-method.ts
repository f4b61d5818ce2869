// How a redrive reaches SQS: pure decisions, kept apart from the calls.

/** What the broker said about message move tasks on a subscription's dead-letter queue. */
export type MoveTasks = Readonly<{ supported: boolean; running: boolean }>;

/**
 * `move-task`: one StartMessageMoveTask moves the whole dead-letter queue
 * back, inside SQS (all dead letters asked for, a broker that has it, and no
 * task of that queue running: SQS allows one at a time). `per-message`: each
 * dead letter is sent again from the registry and its copy deleted (chosen
 * ids, which a task cannot pick out; a broker without move tasks, as the
 * emulator; or a task already running).
 */
export function redriveMethod(ids: readonly string[] | undefined, moveTasks: MoveTasks): 'move-task' | 'per-message' {
  return ids === undefined && moveTasks.supported && !moveTasks.running ? 'move-task' : 'per-message';
}

/** Error names with which SQS, LocalStack and emulators refuse an action they do not have. */
const UNSUPPORTED_ERROR_NAMES: ReadonlySet<string> = new Set(['UnsupportedOperation', 'AWS.SimpleQueueService.UnsupportedOperation', 'InvalidAction', 'UnknownOperationException']);

/** Whether the broker refused the call because it lacks the action (fauxqs 2.4.1 answers `InvalidAction: Unknown action`), not for a passing reason. */
export function isUnsupportedOperation(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return UNSUPPORTED_ERROR_NAMES.has(error.name) || /\bunknown (action|operation)\b/i.test(error.message);
}
