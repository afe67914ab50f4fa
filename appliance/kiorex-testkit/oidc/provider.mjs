// A real OpenID Connect provider (npm oidc-provider, OpenID Certified) for Kiorex's tests.
// Usage: node provider.mjs <port> <config.json>
// config.json: { "issuer": "...", "clients": [...], "users": { "<username>": { "password", "name",
// "email", "groups": [] } } }. Users are read again at every sign-in, so a test can take someone
// out of a group. The login step really checks passwords (the built-in development login form
// would accept any).
import http from 'node:http';
import fs from 'node:fs';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';

const [, , port, configPath] = process.argv;
const config = () => JSON.parse(fs.readFileSync(configPath, 'utf8'));
const { issuer, clients } = config();

// A new signing key at every start: restarting the provider is how a test rotates its keys.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  jwks: { keys: [signingKey] },
  clients: clients.map((c) => ({
    client_id: c.client_id,
    token_endpoint_auth_method: 'none',
    redirect_uris: c.redirect_uris,
    post_logout_redirect_uris: c.post_logout_redirect_uris ?? [],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  })),
  pkce: { required: () => true },
  scopes: ['openid', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email'],
    groups: ['groups'],
  },
  // Put the scope claims in the ID token itself, as Keycloak and Entra ID do.
  conformIdTokenClaims: false,
  findAccount: async (_ctx, id) => {
    const user = config().users[id];
    if (!user) return undefined;
    return {
      accountId: id,
      claims: async () => ({
        sub: id, name: user.name, preferred_username: id, email: user.email, groups: user.groups,
      }),
    };
  },
  features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: true } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['kiorex-test-cookie-key'] },
});

function readForm(req) {
  return new Promise((resolve) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => resolve(Object.fromEntries(new URLSearchParams(body))));
  });
}

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  const match = url.pathname.match(/^\/interaction\/([^/]+)(\/login|\/confirm)?$/);
  if (!match) return callback(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (req.method === 'GET') {
      res.setHeader('content-type', 'text/html');
      res.end(`<form method="post" action="/interaction/${details.uid}/${details.prompt.name === 'login' ? 'login' : 'confirm'}">
        <input name="login"><input name="password" type="password"><button>Sign in</button></form>`);
      return;
    }
    const form = await readForm(req);
    if (match[2] === '/login') {
      const user = config().users[form.login];
      if (!user || user.password !== form.password) {
        res.statusCode = 401;
        res.end('wrong username or password');
        return;
      }
      await provider.interactionFinished(req, res, { login: { accountId: form.login } }, { mergeWithLastSubmission: false });
      return;
    }
    const { prompt: { details: missing }, params, session } = details;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    if (missing.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  } catch (err) {
    res.statusCode = 400;
    res.end(String(err));
  }
});
server.listen(Number(port), '127.0.0.1', () => console.log('ready'));
