// A start-up failure the operator can fix: its message is one line saying
// what is wrong and how to fix it, printed without a stack trace (the cause,
// with its stack, is logged at debug).
export class StartupError extends Error {
  override name = 'StartupError';
}

export function isStartupError(error: unknown): error is StartupError {
  return error instanceof StartupError;
}
