//! The verification examples we hand to app developers (examples/verify) run against a
//! live wxgate: they accept the identity header an upstream really receives and refuse
//! a tampered one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use crate::support::harness::Site;
use crate::support::proxy;
use crate::support::skip;
use crate::support::wechat::{self, WalkingBrowser};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/verify")
}

/// The identity header the app received after a sign-in.
async fn real_token(gate: &Site) -> String {
    let browser = WalkingBrowser::new();
    let pages = wechat::sign_in(&browser, &gate.public_url, "/").await;
    wechat::identity_of(&pages.last().expect("a page").json())
}

/// The same token with another user in it, the signature left as it was.
fn tampered(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS: {token}");
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url"))
            .expect("JSON");
    claims["sub"] = "o-somebody-else".into();
    claims["openid"] = "o-somebody-else".into();
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

/// Runs a verifier off the async runtime (it calls back into wxgate for the JWKS).
async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("the verifier runs"))
        .await
        .expect("blocking task")
}

/// Runs `program` (argv: TOKEN JWKS_URL ISSUER AUDIENCE) for the real token, a tampered
/// one and one meant for another app.
async fn check_verifier(gate: &Site, program: impl Fn() -> Command) {
    let token = real_token(gate).await;
    let jwks = gate.url("/_wxgate/jwks.json");
    let (issuer, audience) = (gate.issuer(), gate.audience());
    let alice = gate.mock.openid("alice", &gate.mock.config().appid);

    let mut ok = program();
    ok.args([&token, &jwks, &issuer, &audience]);
    let out = run(ok).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "real token refused: {stderr}");
    let claims: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("claims are printed as JSON ({e}): {stdout}"));
    assert_eq!(claims["sub"], alice.as_str());
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["aud"], audience.as_str());

    let mut bad = program();
    bad.args([&tampered(&token), &jwks, &issuer, &audience]);
    let out = run(bad).await;
    assert_eq!(out.status.code(), Some(1), "a tampered token is refused");
    assert!(
        out.stdout.is_empty(),
        "no claims printed for a tampered token"
    );

    // Environment variables work as well as arguments; the audience is checked.
    let mut other_app = program();
    other_app
        .env("WXGATE_TOKEN", &token)
        .env("WXGATE_JWKS_URL", &jwks)
        .env("WXGATE_ISSUER", &issuer)
        .env("WXGATE_AUDIENCE", "https://another-app.example.com");
    let out = run(other_app).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "a token for another audience is refused"
    );
}

#[tokio::test]
async fn the_python_example_verifies_the_real_header_and_refuses_a_tampered_one() {
    let Some(python) = skip::program("python3") else {
        return;
    };
    let has_packages = Command::new(&python)
        .args(["-c", "import jwt, cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_packages {
        skip::skip("PyJWT / cryptography not installed (pip install -r examples/verify/python/requirements.txt)");
        return;
    }
    let gate = proxy().run_site().await;
    let script = examples().join("python/verify.py");
    check_verifier(&gate, || {
        let mut cmd = Command::new(&python);
        cmd.arg(&script);
        cmd
    })
    .await;
}

#[tokio::test]
async fn the_node_example_verifies_the_real_header_and_refuses_a_tampered_one() {
    let Some(node) = skip::program("node") else {
        return;
    };
    let dir = examples().join("node");
    if !dir.join("node_modules/jose").is_dir() {
        skip::skip("jose not installed (npm install in examples/verify/node)");
        return;
    }
    let gate = proxy().run_site().await;
    check_verifier(&gate, || {
        let mut cmd = Command::new(&node);
        cmd.arg(dir.join("verify.mjs")).current_dir(&dir);
        cmd
    })
    .await;
}
