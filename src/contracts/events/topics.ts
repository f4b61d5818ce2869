// Topic names: the one place producers and consumers learn them from.

/** The topics the design names. */
export const KOBAN_TOPICS = ['payments', 'rewards', 'referrals', 'accounts'] as const;
