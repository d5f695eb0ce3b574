//! Shared sessions on Redis, end to end: two wxgate replicas behind one public name,
//! one mock WeChat, one app, one real redis-server. A user signed in on one replica is
//! signed in on every replica; signing out, revoking, Redis going away and coming
//! back, and profile refreshes all behave as one service.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::process::run_wxgate as wxgate;
use crate::support::redis_server::{free_port, RedisServer};
use crate::support::wechat::{identity_of, picking_mock, Browser, Platform, SESSION_COOKIE};
use crate::support::{proxy, Gate};
use http::{Method, StatusCode};
use wxgate::config::file::Config;
use wxgate::config::{Dur, Scope, StoreKind};

/// The secrets every replica (and the `sessions` command) shares.
struct Secrets {
    session: String,
    signing_key: String,
}

fn secrets() -> Secrets {
    let (session, signing_key) = wxgate::identity::keygen();
    Secrets {
        session,
        signing_key,
    }
}

/// Two replicas on one Redis: A, and B behind A's public name (as behind a load
/// balancer). Navigations to `/public/*` need no sign-in; `/api/*` is for API clients.
struct Replicas {
    a: Gate,
    b: Gate,
    platform: Platform,
    secrets: Secrets,
}

async fn replicas(redis: &RedisServer, tweak: impl Fn(&mut Config)) -> Replicas {
    let platform = Platform::start(picking_mock()).await;
    let secrets = secrets();
    let configure = |c: &mut Config| {
        c.session.store = StoreKind::Redis;
        c.session.redis_url = redis.url();
        c.session.secret = secrets.session.clone();
        c.identity.signing_key = secrets.signing_key.clone();
        c.access.public_paths = vec!["/public/*".into()];
        c.access.api_paths = vec!["/api/*".into()];
        tweak(c);
    };
    let a = proxy()
        .wechat(&platform)
        .tweak(|c| configure(c))
        .run()
        .await;
    let b = proxy()
        .wechat(&platform)
        .public_url(&a.origin)
        .tweak(|c| configure(c))
        .run()
        .await;
    Replicas {
        a,
        b,
        platform,
        secrets,
    }
}

/// A browser that copied `cookie` and talks to `gate`.
fn carrying(gate: &Gate, cookie: &str) -> Browser {
    let mut browser = gate.phone();
    browser.set_cookie(SESSION_COOKIE, cookie);
    browser
}

/// The page reaches the app as `user`, the identity verified with `gate`'s keys.
async fn assert_signed_in(gate: &Gate, browser: &mut Browser, platform: &Platform, user: &str) {
    let page = browser.get("/orders/42").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let claims = gate.verify(&identity_of(&page.json())).await;
    assert_eq!(claims["openid"], platform.openid(user).as_str());
}

/// The cookie is refused at once: a navigation goes to WeChat, an API call gets 401.
async fn assert_refused(gate: &Gate, cookie: &str) {
    let mut browser = carrying(gate, cookie);
    let page = browser.get("/orders/42").await;
    assert_eq!(page.status, StatusCode::FOUND, "{}", page.text());
    gate.assert_authorize_link(page.header("location").unwrap());
    let mut browser = carrying(gate, cookie);
    let api = browser.get("/api/orders").await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED, "{}", api.text());
    assert_eq!(api.json()["error"], "unauthenticated");
}

#[tokio::test]
async fn a_session_from_one_replica_works_on_the_other_and_signing_out_there_ends_it() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let r = replicas(&redis, |_| {}).await;
    let mut on_a = r.a.phone();
    let cookie = on_a.sign_in(&r.a, "alice").await;

    let mut on_b = carrying(&r.b, &cookie);
    let page = on_b.get("/orders/42").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let token = identity_of(&page.json());
    let claims = r.b.verify(&token).await;
    assert_eq!(claims["openid"], r.platform.openid("alice").as_str());
    assert_eq!(
        r.a.verify(&token).await,
        claims,
        "one signing key: A's JWKS verifies what B signed"
    );

    let out = on_b.get("/_wxgate/sign_out?rd=/bye").await;
    assert_eq!(out.status, StatusCode::FOUND);
    assert_eq!(out.header("location"), Some("/bye"));
    assert_refused(&r.a, &cookie).await;
    assert_refused(&r.b, &cookie).await;
}

// ---------------------------------------------------------------- the sessions command

/// A config file for the `wxgate` command on `redis_url`, in a folder of its own.
fn config_file(name: &str, redis_url: &str, session_secret: &str) -> PathBuf {
    let path = crate::support::scratch_dir(&format!("replicas-{name}")).join("wxgate.toml");
    let text = crate::support::config_head("https://app.example.com", "http://127.0.0.1:3000")
        + &format!(
            r#"store = "redis"
redis_url = "{redis_url}"
redis_connect_timeout = "1s"
secret = "{session_secret}"
"#
        );
    std::fs::write(&path, text).expect("write config");
    path
}

fn run_ok(args: &[&str]) -> String {
    let out = wxgate(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "wxgate {args:?}: {stderr}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn the_sessions_command_counts_live_sessions_and_revokes_a_user_on_every_replica() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let r = replicas(&redis, |_| {}).await;
    let file = config_file("sessions", &redis.url(), &r.secrets.session);
    let file = file.to_str().expect("utf-8 path");

    let alice_phone = r.a.phone().sign_in(&r.a, "alice").await;
    let alice_laptop = r.b.phone().sign_in(&r.b, "alice").await;
    let bob = r.a.phone().sign_in(&r.a, "bob").await;
    assert_eq!(run_ok(&["sessions", "count", "-c", file]), "3");

    let alice = r.platform.openid("alice");
    let said = run_ok(&["sessions", "revoke", "--openid", &alice, "-c", file]);
    assert_eq!(said, format!("revoked 2 session(s) of {alice}"));

    for cookie in [&alice_phone, &alice_laptop] {
        assert_refused(&r.a, cookie).await;
        assert_refused(&r.b, cookie).await;
    }
    for gate in [&r.a, &r.b] {
        assert_signed_in(gate, &mut carrying(gate, &bob), &r.platform, "bob").await;
    }
    assert_eq!(run_ok(&["sessions", "count", "-c", file]), "1");
}

// ---------------------------------------------------------------- Redis away and back

/// Asks `/readyz` until it answers `want` (Redis reconnects on its own; there is no
/// event to await).
async fn await_readyz(gate: &Gate, want: StatusCode) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = crate::support::get(&gate.admin_url("/readyz")).await.status;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {got}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn while_redis_is_down_signed_in_users_get_503_and_come_back_without_signing_in() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let r = replicas(&redis, |_| {}).await;
    let cookie = r.a.phone().sign_in(&r.a, "alice").await;
    // The test server runs without snapshots: write one so the restart keeps the session.
    let _: () = redis::cmd("SAVE").query(&mut redis.client()).unwrap();
    redis.kill();

    for gate in [&r.a, &r.b] {
        let mut browser = carrying(gate, &cookie);
        let page = browser.get("/orders/42").await;
        assert_eq!(
            page.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            page.text()
        );
        assert!(page.header("location").is_none(), "never sent to WeChat");
        assert!(page
            .text()
            .contains("Sign-in service temporarily unavailable"));
        assert_eq!(browser.cookie(SESSION_COOKIE).as_deref(), Some(&*cookie));

        let api = browser
            .request(
                Method::GET,
                "/api/orders",
                &[("accept", "application/json")],
                None,
            )
            .await;
        assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(api.json()["error"], "session_store_unavailable");

        // Public paths keep working, without the identity the store cannot give.
        let public = browser.get("/public/logo.png").await;
        assert_eq!(public.status, StatusCode::OK, "{}", public.text());
        assert_eq!(public.json()["uri"], "/public/logo.png");
        assert!(crate::support::seen(&public.json(), "x-wxgate-jwt-assertion").is_empty());

        let ready = crate::support::get(&gate.admin_url("/readyz")).await;
        assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    }

    redis.restart();
    for gate in [&r.a, &r.b] {
        await_readyz(gate, StatusCode::OK).await;
        let mut browser = carrying(gate, &cookie);
        assert_signed_in(gate, &mut browser, &r.platform, "alice").await;
        let public = browser.get("/public/logo.png").await;
        let claims = gate.verify(&identity_of(&public.json())).await;
        assert_eq!(claims["openid"], r.platform.openid("alice").as_str());
    }
}

// ---------------------------------------------------------------- what Redis holds

#[tokio::test]
async fn redis_holds_no_openid_nickname_or_unionid_in_clear() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let r = replicas(&redis, |c| c.wechat.scope = Scope::UserInfo).await;
    let mut phone = r.a.phone();
    phone.sign_in(&r.a, "alice").await;
    let page = phone.get("/orders/42").await;
    let claims = r.a.verify(&identity_of(&page.json())).await;
    let (openid, nickname) = (claims["openid"].as_str().unwrap(), "Alice");
    assert_eq!(claims["nickname"], "Alice 🌸", "the profile was fetched");
    let unionid = r.platform.mock.unionid("alice").unwrap();

    let mut raw = redis.client();
    let keys: Vec<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter(&mut raw)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        keys.iter().any(|k| k.starts_with("wxgate:s:")),
        "a session is stored: {keys:?}"
    );
    let mut stored: Vec<u8> = vec![];
    for key in &keys {
        stored.extend_from_slice(key.as_bytes());
        let kind: String = redis::cmd("TYPE").arg(key).query(&mut raw).unwrap();
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![redis::cmd("GET").arg(key).query(&mut raw).unwrap()],
            "set" => redis::cmd("SMEMBERS").arg(key).query(&mut raw).unwrap(),
            other => panic!("unexpected {other} at {key}"),
        };
        values.into_iter().for_each(|v| stored.extend(v));
    }
    for secret in [openid, nickname, unionid.as_str()] {
        let found = stored.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(!found, "{secret} is in Redis in clear");
    }
}

// ---------------------------------------------------------------- profile refresh

#[tokio::test]
async fn concurrent_requests_on_both_replicas_refresh_a_due_profile_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let r = replicas(&redis, |c| {
        c.wechat.scope = Scope::UserInfo;
        c.session.refresh_interval = Dur(Duration::from_secs(2));
    })
    .await;
    let cookie = r.a.phone().sign_in(&r.a, "alice").await;
    let before = r.platform.mock.calls("refresh_token");
    // profile_at is in whole seconds: past 2.1 s the profile is due. After the refresh
    // it is due again at least a second later, long after the 16 requests (with 1 s,
    // a refresh just before a second boundary made it due again at once).
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let mut browsers: Vec<Browser> = (0..16)
        .map(|i| carrying(if i % 2 == 0 { &r.a } else { &r.b }, &cookie))
        .collect();
    let pages =
        futures_util::future::join_all(browsers.iter_mut().map(|b| b.get("/orders/42"))).await;
    for page in &pages {
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    }
    assert_eq!(
        r.platform.mock.calls("refresh_token"),
        before + 1,
        "one refresh for 16 concurrent requests on two replicas"
    );
}

// ---------------------------------------------------------------- start-up

#[test]
fn redis_required_at_start_refuses_to_serve_naming_the_address() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let file = config_file("required", &url, &secrets().session);
    let out = wxgate(&["serve", "-c", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    // The key to fix, the address once, and what to do.
    assert!(lines[0].contains("session.redis_url: "), "{stderr}");
    assert_eq!(
        lines[0].matches(&format!("127.0.0.1:{port}")).count(),
        1,
        "{stderr}"
    );
    assert!(lines[0].contains("redis_required_at_start"), "{stderr}");
}
