// A real OpenID Provider (the `oidc-provider` package) on loopback for the end-to-end tests:
// one confidential client (client_secret_post, PKCE required), RS256 ID tokens, and accounts
// that exist for any login_hint. Logging in and consenting are completed non-interactively: the
// interaction endpoint signs in the account named by the authorization request's `login_hint`
// (the address becomes `sub` and `email`; addresses starting with `unverified` get
// `email_verified: false`) and grants the requested scopes.
//
// usage: node tests/oidc/provider.mjs --client-id ID --client-secret SECRET --redirect-uri URI
// Prints `listening on http://127.0.0.1:PORT` (the issuer) once serving; stops on SIGTERM.
import http from "node:http";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import Provider from "oidc-provider";

const arg = (name) => {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`missing --${name}`);
  return process.argv[i + 1];
};

const server = http.createServer();
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: "jwk" }), kid: "e2e-rs256", alg: "RS256", use: "sig" };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: arg("client-id"),
      client_secret: arg("client-secret"),
      redirect_uris: [arg("redirect-uri")],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_post",
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString("hex")] },
  pkce: { required: () => true },
  // Like Google and Entra, put the scope's claims (email, email_verified, name) in the ID token.
  conformIdTokenClaims: false,
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: id, email_verified: !id.startsWith("unverified"), name: `Test ${id.split("@")[0]}` };
      },
    };
  },
});

async function interaction(req, res) {
  try {
    const details = await provider.interactionDetails(req, res);
    const { prompt, params, session } = details;
    let result;
    if (prompt.name === "login") {
      if (!params.login_hint) {
        res.writeHead(400, { "content-type": "text/plain" });
        return res.end("this test provider signs in the account named by login_hint");
      }
      result = { login: { accountId: String(params.login_hint) } };
    } else {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(" "));
      if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
      result = { consent: { grantId: await grant.save() } };
    }
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
  } catch (e) {
    res.writeHead(500, { "content-type": "text/plain" });
    res.end(String(e && e.message));
  }
}

const callback = provider.callback();
server.on("request", (req, res) => {
  if (req.url.startsWith("/interaction/")) return void interaction(req, res);
  callback(req, res);
});
console.log(`listening on ${issuer}`);
process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
