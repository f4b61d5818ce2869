// Goal: a user-chosen endpoint reaches only public addresses — every loopback, private, link-local, shared, multicast, reserved and documentation address is refused in each of its spellings (IPv4, IPv6, IPv4 inside IPv6), public ones pass, and a name is refused if any one of the addresses it resolves to is refused.
import assert from 'node:assert/strict';
import type dns from 'node:dns';
import { describe, test } from 'node:test';
import { checkedLookup, ipLiteral, isPublicAddress, NonPublicAddressError, nonPublicHost, type Resolver } from './net-policy.ts';

const REFUSED = [
  // IPv4
  '0.0.0.0',
  '0.1.2.3',
  '10.0.0.5',
  '10.255.255.255',
  '100.64.0.1',
  '100.127.255.254',
  '127.0.0.1',
  '127.255.255.254',
  '169.254.169.254',
  '172.16.0.1',
  '172.31.255.255',
  '192.0.0.8',
  '192.0.2.1',
  '192.88.99.1',
  '192.168.1.1',
  '198.18.0.1',
  '198.19.255.255',
  '198.51.100.7',
  '203.0.113.9',
  '224.0.0.1',
  '239.255.255.250',
  '240.0.0.1',
  '255.255.255.255',
  // IPv6
  '::',
  '::1',
  '0:0:0:0:0:0:0:1',
  '::127.0.0.1',
  'fc00::1',
  'fd12:3456:789a::1',
  'fe80::1',
  'fe80::1%eth0',
  'febf:ffff::1',
  'fec0::1',
  'ff02::1',
  '100::1',
  '64:ff9b:1::a00:5',
  '2001::1',
  '2001:db8::1',
  '3fff::1',
  '5f00::1',
  // IPv4 inside IPv6: judged as the IPv4 address.
  '::ffff:127.0.0.1',
  '::ffff:7f00:1',
  '::FFFF:10.0.0.5',
  '::ffff:a9fe:a9fe',
  '0:0:0:0:0:ffff:c0a8:101',
  '64:ff9b::10.0.0.5',
  '64:ff9b::7f00:1',
  '2002:a00:5::1',
  '2002:7f00:1::',
];

const PUBLIC = ['8.8.8.8', '1.1.1.1', '93.184.216.34', '100.63.255.255', '100.128.0.0', '172.15.255.255', '172.32.0.0', '192.167.255.255', '192.169.0.0', '223.255.255.255', '2606:4700::1', '2001:4860:4860::8888', '2a00:1450:4001:82a::200e', '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1'];

describe('isPublicAddress', () => {
  for (const address of REFUSED) {
    test(`refuses ${address}`, () => assert.equal(isPublicAddress(address), false));
  }
  for (const address of PUBLIC) {
    test(`accepts ${address}`, () => assert.equal(isPublicAddress(address), true));
  }
  test('a name or garbage is not an address, so not a public one', () => {
    for (const text of ['example.com', '', '1.2.3', '::g', '[::1]']) assert.equal(isPublicAddress(text), false, text);
  });
});

describe('nonPublicHost, on hostnames as the URL parser gives them', () => {
  const hostOf = (url: string) => new URL(url).hostname;

  test('IP literals in every spelling the parser accepts are judged by their address', () => {
    for (const url of ['http://127.0.0.1/', 'http://127.1/', 'http://0x7f000001/', 'http://2130706433/', 'http://0177.0.0.1/', 'http://127.0.0.1./', 'http://0.0.0.0/', 'http://0/', 'http://[::1]/', 'http://[::]/', 'http://[::ffff:127.0.0.1]/', 'http://[::ffff:10.0.0.5]:8080/x', 'http://169.254.169.254/latest/meta-data/', 'http://10.0.0.5/admin', 'http://[fd00::1]/', 'http://user:pass@192.168.0.1/']) {
      assert.match(nonPublicHost(hostOf(url)) ?? 'accepted', /^the non-public address /, url);
    }
    assert.equal(nonPublicHost(hostOf('http://127.1/')), 'the non-public address 127.0.0.1');
    assert.equal(nonPublicHost(hostOf('http://[::ffff:127.0.0.1]/')), 'the non-public address ::ffff:7f00:1');
  });

  test('localhost and its subdomains are refused by name', () => {
    for (const url of ['http://localhost/', 'http://LOCALHOST:1/', 'http://localhost./', 'http://api.localhost/', 'http://a.b.localhost../x']) {
      assert.equal(nonPublicHost(hostOf(url)), 'a localhost name', url);
    }
  });

  test('public literals and other names pass (a name is judged when it is resolved)', () => {
    for (const url of ['https://8.8.8.8/hook', 'http://[2606:4700::1]:8443/', 'https://example.com/koban-hook', 'http://localhost.example.com/', 'http://notlocalhost/', 'http://10.0.0.5.nip.io/']) {
      assert.equal(nonPublicHost(hostOf(url)), undefined, url);
    }
  });

  test('ipLiteral unwraps IPv6 brackets and leaves names alone', () => {
    assert.equal(ipLiteral('[::1]'), '::1');
    assert.equal(ipLiteral('127.0.0.1'), '127.0.0.1');
    assert.equal(ipLiteral('example.com'), undefined);
  });
});

describe('checkedLookup', () => {
  const resolverOf = (addresses: dns.LookupAddress[], calls: string[] = []): Resolver => (hostname, options, callback) => {
    calls.push(`${hostname} all=${String(options.all)}`);
    queueMicrotask(() => callback(null, addresses));
  };
  const lookUp = (lookup: ReturnType<typeof checkedLookup>, options: dns.LookupOptions) =>
    new Promise<{ error: NodeJS.ErrnoException | null; address: string | dns.LookupAddress[]; family: number | undefined }>((resolve) => {
      lookup('hooks.example', options, (error, address, family) => resolve({ error, address, family }));
    });

  test('answers in the shape asked for when every address is public, resolving all of them either way', async () => {
    const calls: string[] = [];
    const addresses = [
      { address: '93.184.216.34', family: 4 },
      { address: '2606:4700::1', family: 6 },
    ];
    const lookup = checkedLookup(undefined, resolverOf(addresses, calls));
    assert.deepEqual(await lookUp(lookup, { all: true }), { error: null, address: addresses, family: undefined });
    assert.deepEqual(await lookUp(lookup, {}), { error: null, address: '93.184.216.34', family: 4 });
    assert.deepEqual(calls, ['hooks.example all=true', 'hooks.example all=true']);
  });

  test('fails naming the address when any one of them is not public, whichever the socket would have used', async () => {
    for (const addresses of [[{ address: '10.0.0.5', family: 4 }], [{ address: '93.184.216.34', family: 4 }, { address: '10.0.0.5', family: 4 }], [{ address: '2606:4700::1', family: 6 }, { address: '::ffff:10.0.0.5', family: 6 }]]) {
      for (const options of [{ all: true }, {}]) {
        const { error } = await lookUp(checkedLookup(undefined, resolverOf(addresses)), options);
        assert.ok(error instanceof NonPublicAddressError, JSON.stringify(addresses));
        assert.equal(error.code, 'ERR_NON_PUBLIC_ADDRESS');
        assert.equal(error.hostname, 'hooks.example');
        assert.equal(error.address, addresses.at(-1)!.address);
      }
    }
  });

  test("passes the resolver's own failure through, and a policy that accepts everything accepts private addresses", async () => {
    const failing: Resolver = (_hostname, _options, callback) => callback(Object.assign(new Error('getaddrinfo ENOTFOUND hooks.example'), { code: 'ENOTFOUND' }), []);
    const { error } = await lookUp(checkedLookup(undefined, failing), { all: true });
    assert.equal(error?.code, 'ENOTFOUND');
    const open = checkedLookup(() => true, resolverOf([{ address: '127.0.0.1', family: 4 }]));
    assert.deepEqual(await lookUp(open, {}), { error: null, address: '127.0.0.1', family: 4 });
  });
});
