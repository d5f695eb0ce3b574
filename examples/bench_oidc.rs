//! A minimal OpenID Connect provider for the benchmark (see bench/compare.sh): enough
//! for oauth2-proxy's `oidc` provider to sign a benchmark user in, nothing more.
//!
//!   cargo run --release --example bench_oidc -- 127.0.0.1:PORT
//!
//! Serves discovery (`/.well-known/openid-configuration`), the JWKS, an authorize
//! endpoint that consents at once (302 back with a code), a token endpoint that trades
//! any code for an ES256 id_token (the user `bench@example.com`, valid for a day) and a
//! userinfo endpoint. The code carries the authorize request's nonce, so nothing is
//! kept between requests. A key pair is made at start; nothing is checked that a real
//! provider would check (client secret, redirect URI, code reuse): never use it
//! outside a benchmark.

// A measuring tool, not the product: a failure here should stop the bench loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

const KID: &str = "bench-1";
const USER: &str = "bench@example.com";

struct Provider {
    issuer: String,
    key: EcdsaKeyPair,
}

impl Provider {
    fn jwks(&self) -> Value {
        // An uncompressed P-256 point: 0x04, then x and y (32 bytes each).
        let point = self.key.public_key().as_ref();
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": KID,
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        }]})
    }

    fn discovery(&self) -> Value {
        let i = &self.issuer;
        json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}/authorize"),
            "token_endpoint": format!("{i}/token"),
            "userinfo_endpoint": format!("{i}/userinfo"),
            "jwks_uri": format!("{i}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "claims_supported": ["sub", "email", "email_verified", "name"],
        })
    }

    fn id_token(&self, client_id: &str, nonce: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": KID});
        let mut claims = json!({
            "iss": self.issuer, "sub": "bench-user", "aud": client_id,
            "iat": now, "exp": now + 86_400,
            "email": USER, "email_verified": true, "name": "Bench User",
            "preferred_username": "bench",
        });
        if !nonce.is_empty() {
            claims["nonce"] = json!(nonce);
        }
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("ECDSA signing");
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }
}

fn params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

fn param<'a>(ps: &'a [(String, String)], key: &str) -> &'a str {
    ps.iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

fn json_response(v: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(v.to_string())))
        .expect("static response")
}

fn status(code: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text.to_owned())));
    *r.status_mut() = code;
    r
}

/// The client id a token request names, in its form or in Basic credentials.
fn client_id(req_headers: &http::HeaderMap, form: &[(String, String)]) -> String {
    let from_form = param(form, "client_id");
    if !from_form.is_empty() {
        return from_form.to_owned();
    }
    req_headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| pair.split_once(':').map(|(id, _)| id.to_owned()))
        .map(|id| {
            percent_encoding::percent_decode_str(&id)
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default()
}

async fn handle(p: Arc<Provider>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let query = params(req.uri().query().unwrap_or(""));
    match path.as_str() {
        "/.well-known/openid-configuration" => json_response(&p.discovery()),
        "/jwks" => json_response(&p.jwks()),
        "/authorize" => {
            let redirect = param(&query, "redirect_uri");
            if redirect.is_empty() {
                return status(StatusCode::BAD_REQUEST, "redirect_uri missing");
            }
            let code = B64.encode(param(&query, "nonce"));
            let state = param(&query, "state");
            let sep = if redirect.contains('?') { '&' } else { '?' };
            let enc = |s: &str| {
                percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            };
            let location = format!("{redirect}{sep}code=c{}&state={}", enc(&code), enc(state));
            Response::builder()
                .status(StatusCode::FOUND)
                .header(header::LOCATION, location)
                .body(Full::new(Bytes::new()))
                .expect("static response")
        }
        "/token" => {
            let headers = req.headers().clone();
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return status(StatusCode::BAD_REQUEST, "unreadable body"),
            };
            let form = params(&String::from_utf8_lossy(&body));
            let code = param(&form, "code");
            let Some(nonce) = code
                .strip_prefix('c')
                .and_then(|c| B64.decode(c).ok())
                .and_then(|n| String::from_utf8(n).ok())
            else {
                return json_response(&json!({"error": "invalid_grant"}));
            };
            let client = client_id(&headers, &form);
            let mut token = [0u8; 16];
            aws_lc_rs::rand::fill(&mut token).expect("random bytes");
            json_response(&json!({
                "access_token": format!("at-{}", B64.encode(token)),
                "token_type": "Bearer",
                "expires_in": 86_400,
                "id_token": p.id_token(&client, &nonce),
            }))
        }
        "/userinfo" => json_response(&json!({
            "sub": "bench-user", "email": USER, "email_verified": true, "name": "Bench User",
        })),
        _ => status(StatusCode::NOT_FOUND, "not found"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into())
        .parse()
        .expect("usage: bench_oidc ADDR (e.g. 127.0.0.1:9000)");
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("the address is free");
    let addr = listener.local_addr().expect("bound");
    let rng = SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("a P-256 key");
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .expect("the key just made");
    let provider = Arc::new(Provider {
        issuer: format!("http://{addr}"),
        key,
    });
    println!("bench_oidc: issuer http://{addr}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let p = provider.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let p = p.clone();
                async move { Ok::<_, Infallible>(handle(p, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
