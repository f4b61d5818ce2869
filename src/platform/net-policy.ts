// Which addresses an outbound request chosen by a user (a webhook endpoint)
// may reach: only public ones. Loopback, private, link-local, shared (CGNAT),
// multicast, reserved and documentation ranges lead into the operator's own
// network or nowhere; a request there on a user's say-so is server-side
// request forgery. The ranges are IANA's special-purpose registries; IPv6
// outside global unicast (2000::/3) is never public, and IPv6 forms that
// carry an IPv4 address (mapped, NAT64, 6to4) are judged by that address.
// Two uses: a URL's host when it is an IP literal or a localhost name
// (refused before anything is stored), and every address a host name
// resolves to, in the lookup the HTTP client connects with — so the address
// checked is the address connected to, however the name resolves later.
import dns from 'node:dns';
import net from 'node:net';

function blockList(family: 'ipv4' | 'ipv6', subnets: ReadonlyArray<readonly [string, number]>): net.BlockList {
  const list = new net.BlockList();
  for (const [network, prefix] of subnets) list.addSubnet(network, prefix, family);
  return list;
}

const IPV4_NON_PUBLIC = blockList('ipv4', [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // shared address space (CGNAT)
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local (cloud metadata endpoints live here)
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation (TEST-NET-1)
  ['192.88.99.0', 24], // 6to4 relay anycast (deprecated)
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation (TEST-NET-2)
  ['203.0.113.0', 24], // documentation (TEST-NET-3)
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, and the broadcast address 255.255.255.255
]);

/** The only IPv6 space that is routed on the internet; loopback, unspecified, unique-local, link-local, multicast and the rest lie outside it. */
const IPV6_GLOBAL_UNICAST = blockList('ipv6', [['2000::', 3]]);

const IPV6_NON_PUBLIC = blockList('ipv6', [
  ['2001::', 23], // IETF protocol assignments (Teredo, benchmarking, ORCHID)
  ['2001:db8::', 32], // documentation
  ['3fff::', 20], // documentation
]);

/** The 8 16-bit groups of an IPv6 address that net.isIPv6 accepts (a zone id is dropped). */
function ipv6Groups(address: string): number[] {
  let text = address.split('%')[0]!;
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const headGroups = head === '' ? [] : head.split(':');
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const zeros = rest === undefined ? [] : new Array<string>(8 - headGroups.length - restGroups.length).fill('0');
  return [...headGroups, ...zeros, ...restGroups].map((group) => Number.parseInt(group, 16));
}

const ipv4Of = (high: number, low: number) => `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;

/** The IPv4 address an IPv6 address stands for, if it is one of the forms that carry one. */
function embeddedIpv4(groups: readonly number[]): string | undefined {
  const [g0, g1, g2, g3, g4, g5, g6, g7] = groups as [number, number, number, number, number, number, number, number];
  // ::ffff:a.b.c.d, IPv4-mapped: a socket connects to a.b.c.d itself.
  if (g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0xffff) return ipv4Of(g6, g7);
  // 64:ff9b::a.b.c.d, NAT64's well-known prefix: a translator connects to a.b.c.d.
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) return ipv4Of(g6, g7);
  // 2002:aabb:ccdd::/48, 6to4: relayed to aa.bb.cc.dd.
  if (g0 === 0x2002) return ipv4Of(g1, g2);
  return undefined;
}

/** Whether `address` (an IPv4 or IPv6 address, not a name) is one an outbound request chosen by a user may reach. */
export function isPublicAddress(address: string): boolean {
  if (net.isIPv4(address)) return !IPV4_NON_PUBLIC.check(address, 'ipv4');
  if (!net.isIPv6(address)) return false;
  const groups = ipv6Groups(address);
  const ipv4 = embeddedIpv4(groups);
  if (ipv4 !== undefined) return isPublicAddress(ipv4);
  const canonical = groups.map((group) => group.toString(16)).join(':');
  return IPV6_GLOBAL_UNICAST.check(canonical, 'ipv6') && !IPV6_NON_PUBLIC.check(canonical, 'ipv6');
}

/** The address a URL's hostname (as `URL` gives it: IPv6 in brackets, IPv4 already dotted) is, if it is an IP literal. */
export function ipLiteral(hostname: string): string | undefined {
  if (hostname.startsWith('[') && hostname.endsWith(']')) return hostname.slice(1, -1);
  return net.isIPv4(hostname) ? hostname : undefined;
}

/**
 * Why a URL's hostname cannot be a user's endpoint without resolving it: the
 * non-public address it is, or that it is a localhost name (RFC 6761: always
 * the machine itself). Undefined for any other name: that one is judged by
 * what it resolves to, when connecting.
 */
export function nonPublicHost(hostname: string): string | undefined {
  const literal = ipLiteral(hostname);
  if (literal !== undefined) return isPublicAddress(literal) ? undefined : `the non-public address ${literal}`;
  const name = hostname.toLowerCase().replace(/\.+$/, '');
  if (name === 'localhost' || name.endsWith('.localhost')) return 'a localhost name';
  return undefined;
}

/** Resolution of a name to all its addresses, as dns.lookup with `all: true`. */
export type Resolver = (hostname: string, options: dns.LookupAllOptions, callback: (error: NodeJS.ErrnoException | null, addresses: dns.LookupAddress[]) => void) => void;

const systemResolver: Resolver = (hostname, options, callback) => dns.lookup(hostname, options, callback);

/** A lookup refused because the name resolves to an address it may not reach. */
export class NonPublicAddressError extends Error {
  readonly code = 'ERR_NON_PUBLIC_ADDRESS';
  readonly hostname: string;
  readonly address: string;

  constructor(hostname: string, address: string) {
    super(`${hostname} resolves to the non-public address ${address}`);
    this.name = 'NonPublicAddressError';
    this.hostname = hostname;
    this.address = address;
  }
}

/**
 * A `lookup` for net.connect (and so for undici's `connect` option): resolves
 * every address of the name and fails with NonPublicAddressError if any one is
 * refused by `accepts`, else answers what the socket asked for. Every address
 * is judged, not only the one used first: a socket may fall back to another
 * (happy eyeballs), and a name that mixes public and private addresses is a
 * rebinding attempt anyway. IP literals never reach a lookup: judge them with
 * `ipLiteral` and `isPublicAddress` before connecting.
 */
export function checkedLookup(accepts: (address: string) => boolean = isPublicAddress, resolve: Resolver = systemResolver): net.LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, '');
      const refused = addresses.find((entry) => !accepts(entry.address));
      if (refused !== undefined) return callback(new NonPublicAddressError(hostname, refused.address), '');
      if (options.all === true) return callback(null, addresses);
      const [first] = addresses;
      if (first === undefined) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), '');
      return callback(null, first.address, first.family);
    });
  };
}
