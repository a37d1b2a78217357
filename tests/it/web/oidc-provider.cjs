// A ministry's OpenID Connect provider for tests/it/web/oidc.rs: panva's oidc-provider (a
// certified implementation, installed from npm into target/oidc-provider by the test),
// on a free loopback port, with one client and its built-in development login and
// consent pages, so that a real browser signs in through the provider's own pages.
//
// node oidc-provider.cjs '<json>' where the JSON has:
//   modules:  the node_modules folder holding oidc-provider
//   client:   { client_id, client_secret, redirect_uri }
//   accounts: { "<login typed on the provider's page>": { sub, claims... } }
// Prints one line of JSON, {"issuer": "http://127.0.0.1:<port>"}, once it listens, and
// runs until it is killed. It reaches nothing outside this machine.
'use strict';

const http = require('node:http');
const path = require('node:path');
const { pathToFileURL } = require('node:url');

// stdout carries the one line the test reads; the provider's notices go to stderr.
console.log = console.error;
console.info = console.error;

async function main() {
  const cfg = JSON.parse(process.argv[2]);
  // oidc-provider is an ES module: imported by path, from where the test installed it.
  const entry = path.join(cfg.modules, 'oidc-provider', 'lib', 'index.js');
  const { default: Provider } = await import(pathToFileURL(entry).href);

  // Listen first, on loopback only, so that the issuer can name the port.
  const server = http.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const issuer = `http://127.0.0.1:${server.address().port}`;

  const accounts = cfg.accounts;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: cfg.client.client_id,
        client_secret: cfg.client.client_secret,
        redirect_uris: [cfg.client.redirect_uri],
        response_types: ['code'],
        grant_types: ['authorization_code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    // PKCE (S256) for every client, not only public ones.
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true } },
    // `groups` is a scope of its own carrying the claim the web front maps to roles.
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    // The development login page takes any login and password; it signs in the
    // account of that login, which must be one of the test's.
    async findAccount(_ctx, id) {
      const account = accounts[id];
      if (!account) return undefined;
      return {
        accountId: id,
        async claims() {
          return { ...account };
        },
      };
    },
    cookies: { keys: ['himaya-test-only-cookie-key-0123456789'] },
  });

  // The development pages import a web font from the internet; a policy keeps the
  // browser from fetching it (a test reaches nothing beyond this machine).
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.type === 'text/html') {
      ctx.set('content-security-policy', "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'none'");
    }
  });

  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
}

main().catch((e) => {
  process.stderr.write(`oidc-provider did not start: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
