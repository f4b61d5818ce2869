// The payment services' own catalogue errors (docs/errors.md), one function each.
import { type ErrorDetails, KobanError } from '../../../platform/errors.ts';

export function authorizationClosed(message: string, details: ErrorDetails): KobanError {
  return new KobanError('authorization_closed', message, details);
}

export function cancelWindowClosed(message: string, details: ErrorDetails): KobanError {
  return new KobanError('cancel_window_closed', message, details);
}

export function exceedsHeldAmount(message: string, details: ErrorDetails): KobanError {
  return new KobanError('exceeds_held_amount', message, details);
}

export function exceedsCapturedAmount(message: string, details: ErrorDetails): KobanError {
  return new KobanError('exceeds_captured_amount', message, details);
}

export function unsupportedCurrency(message: string, details: ErrorDetails): KobanError {
  return new KobanError('unsupported_currency', message, details);
}
