// Which routes a path matches, by any method: what the router cannot tell the
// HTTP shell once it has found no route for one method (a 405 needs the
// methods that would have matched, for its Allow header; an over-long path
// parameter is refused by the router before it says which parameter it was).
// Fastify's own lookup cannot serve: on such paths it returns the handler of
// its error, not "no route".

type Segment = { kind: 'static'; text: string } | { kind: 'param'; name: string } | { kind: 'wildcard' };
type Route = { method: string; segments: readonly Segment[] };

export class RouteTable {
  readonly #routes: Route[] = [];

  /** Records a route as Fastify declares it: `/v1/users/:user_id/balances`, `/docs/*`. */
  add(methods: string | readonly string[], url: string): void {
    const segments = url
      .split('/')
      .slice(1)
      .map((part): Segment => (part === '*' ? { kind: 'wildcard' } : part.startsWith(':') ? { kind: 'param', name: part.slice(1) } : { kind: 'static', text: part }));
    for (const method of typeof methods === 'string' ? [methods] : methods) this.#routes.push({ method: method.toUpperCase(), segments });
  }

  /** The methods some route accepts on `url` (its path; a query is ignored), sorted; empty if none. */
  methodsFor(url: string): string[] {
    const parts = pathParts(url);
    const methods = new Set<string>();
    for (const route of this.#routes) if (matches(route.segments, parts) !== undefined) methods.add(route.method);
    return [...methods].sort();
  }

  /** The path parameters of the route `method url` matches, by name, as sent (still percent-encoded); undefined if none matches. */
  parametersOf(method: string, url: string): Record<string, string> | undefined {
    const parts = pathParts(url);
    for (const route of this.#routes) {
      if (route.method !== method.toUpperCase()) continue;
      const parameters = matches(route.segments, parts);
      if (parameters !== undefined) return parameters;
    }
    return undefined;
  }
}

function pathParts(url: string): string[] {
  const query = url.indexOf('?');
  return (query === -1 ? url : url.slice(0, query)).split('/').slice(1);
}

/** The parameters if `segments` match the path's `parts`, else undefined. */
function matches(segments: readonly Segment[], parts: readonly string[]): Record<string, string> | undefined {
  const parameters: Record<string, string> = {};
  for (let index = 0; index < segments.length; index++) {
    const segment = segments[index]!;
    if (segment.kind === 'wildcard') return parameters;
    const part = parts[index];
    if (part === undefined) return undefined;
    if (segment.kind === 'param') {
      if (part === '') return undefined;
      parameters[segment.name] = part;
    } else if (decoded(part) !== segment.text) {
      return undefined;
    }
  }
  return parts.length === segments.length ? parameters : undefined;
}

function decoded(part: string): string {
  if (!part.includes('%')) return part;
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}
