// The filter policy language a subscription declares (SNS's semantics; the bus
// evaluates it): keys are ANDed, the conditions under one key ORed.

export type FilterCondition =
  | string
  | { prefix: string }
  | { 'anything-but': string | readonly string[] | { prefix: string } }
  | { exists: boolean };

export type FilterPolicy = Readonly<Record<string, readonly FilterCondition[]>>;
