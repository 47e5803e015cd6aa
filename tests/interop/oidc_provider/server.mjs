// A local node `oidc-provider` 8.x for freshtoken's interop tests.
//
// Usage: node server.mjs CONFIG.json
//
// The pytest fixture in tests/interop/conftest.py writes CONFIG.json (clients, resource servers,
// users, access-token lifetime) and starts this program. It listens on 127.0.0.1 on a port the
// kernel picks (port 0), builds the provider with the issuer that port implies, and then prints
// one JSON line {"event": "ready", "issuer": ..., "port": ...} on stdout, which the fixture waits
// for. Nothing here is meant for anything but tests on the loopback interface.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import process from 'node:process';

import Provider, { errors } from 'oidc-provider';

const configPath = process.argv[2];
if (!configPath) {
  process.stderr.write('usage: node server.mjs CONFIG.json\n');
  process.exit(2);
}

/**
 * @type {{
 *   accessTokenTTL: number,
 *   defaultResource: string,
 *   resources: Record<string, { scope: string, accessTokenTTL?: number }>,
 *   clients: object[],
 *   users: Record<string, string>,
 * }}
 */
const config = JSON.parse(readFileSync(configPath, 'utf8'));

// The provider's own signing key (JWT access tokens, ID tokens), fresh for every run.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = { ...privateKey.export({ format: 'jwk' }), kid: 'interop-rs256', use: 'sig', alg: 'RS256' };

function resourceServerInfo(indicator) {
  const resource = config.resources[indicator];
  if (!resource) {
    throw new errors.InvalidTarget(`unknown resource indicator ${indicator}`);
  }
  return {
    scope: resource.scope,
    audience: indicator,
    accessTokenTTL: resource.accessTokenTTL ?? config.accessTokenTTL,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
  };
}

const configuration = {
  clients: config.clients,
  jwks: { keys: [signingJwk] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  // Only the users the fixture configured exist; the dev login form takes the username (it does
  // not check passwords: devInteractions is a development helper).
  async findAccount(ctx, sub) {
    if (!Object.hasOwn(config.users, sub)) {
      return undefined;
    }
    return { accountId: sub, async claims() { return { sub }; } };
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // A request without `resource` gets a token for the default API (a JWT, like every
      // token here); a code or refresh exchange that holds several resources gets the default.
      defaultResource(ctx, client, oneOf) {
        if (oneOf) {
          return oneOf.includes(config.defaultResource) ? config.defaultResource : oneOf[0];
        }
        return config.defaultResource;
      },
      // The refresh-token exchange may omit `resource`: the granted one is used.
      useGrantedResource() {
        return true;
      },
      getResourceServerInfo(ctx, indicator) {
        return resourceServerInfo(indicator);
      },
    },
  },
  // PKCE (S256) for every authorization-code request, confidential clients included.
  pkce: { required: () => true },
  // Every refresh token is single use: a refresh returns a new one and consumes the old one.
  // Presenting a consumed one gives invalid_grant and revokes the whole grant.
  rotateRefreshToken: true,
  async issueRefreshToken(ctx, client, code) {
    return client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access');
  },
  ttl: {
    AccessToken: config.accessTokenTTL,
    ClientCredentials: config.accessTokenTTL,
  },
  // Tell the client why a request failed (the tests read error_description when they fail).
  renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
};

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration);
  provider.on('server_error', (ctx, err) => {
    process.stderr.write(`server_error: ${err.stack}\n`);
  });
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ event: 'ready', issuer, port })}\n`);
});

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

// Exit when the test run that started us dies without stopping us (we get reparented).
const parentPid = process.ppid;
setInterval(() => {
  if (process.ppid !== parentPid) {
    stop();
  }
}, 1000).unref();
