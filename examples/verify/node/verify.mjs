#!/usr/bin/env node
// Verify wxgate's identity header in a Node.js app (jose).
//
//     node verify.mjs TOKEN JWKS_URL ISSUER AUDIENCE
//
// Each argument may instead come from the environment: WXGATE_TOKEN, WXGATE_JWKS_URL,
// WXGATE_ISSUER (public_url + "/_wxgate"), WXGATE_AUDIENCE (identity.audience).
// Prints the claims as JSON and exits 0, or prints why not and exits 1.
//
// In an app, create the remote key set once at start-up (it caches and refreshes the
// keys when a new kid appears) and call verify() with the X-Wxgate-Jwt-Assertion header.
import { createRemoteJWKSet, jwtVerify } from "jose";

// Only asymmetric algorithms: the key set never holds a shared secret.
const ALGORITHMS = ["ES256", "EdDSA", "RS256"];

export async function verify(token, jwks, issuer, audience) {
  const { payload } = await jwtVerify(token, jwks, {
    algorithms: ALGORITHMS,
    issuer,
    audience,
    requiredClaims: ["exp", "iss", "aud", "sub"],
    clockTolerance: 30, // clock skew between wxgate and the app
  });
  return payload;
}

async function main(argv) {
  const names = ["WXGATE_TOKEN", "WXGATE_JWKS_URL", "WXGATE_ISSUER", "WXGATE_AUDIENCE"];
  const values = names.map((n, i) => argv[i] || process.env[n] || "");
  const missing = names.filter((_, i) => !values[i]);
  if (missing.length > 0) {
    console.error("usage: node verify.mjs TOKEN JWKS_URL ISSUER AUDIENCE");
    console.error(`missing: ${missing.join(", ")}`);
    return 2;
  }
  const [token, jwksUrl, issuer, audience] = values;
  try {
    const claims = await verify(token, createRemoteJWKSet(new URL(jwksUrl)), issuer, audience);
    console.log(JSON.stringify(claims));
    return 0;
  } catch (e) {
    console.error(`invalid identity token: ${e.code ?? ""} ${e.message}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
