//! Several apps behind one wxgate: `[[routes]]` choose the upstream by host and path,
//! each with its own access, allowlist, audience and prefix, on real sockets.

use crate::support::wechat::{identity_of, picking_mock, Browser, Platform, PHONE_UA};
use crate::support::{self as common, proxy, seen, start_upstream, Gate, Upstream};
use http::{Method, StatusCode};
use serde_json::Value;
use wxgate::config::file::Config;

/// Three apps: the default `[upstream]` (the platform's echo), and two more echoes.
struct Apps {
    platform: Platform,
    crm: Upstream,
    shop: Upstream,
}

impl Apps {
    async fn start() -> Apps {
        Apps {
            platform: Platform::start(picking_mock()).await,
            crm: start_upstream().await,
            shop: start_upstream().await,
        }
    }

    /// Which app answered: the echo reports the Host it got, which is the upstream's
    /// own authority (`preserve_host = false`).
    fn which(&self, echo: &Value) -> &'static str {
        let host = seen(echo, "host");
        let host = host.first().map(String::as_str).unwrap_or("");
        if host == self.crm.addr.to_string() {
            "crm"
        } else if host == self.shop.addr.to_string() {
            "shop"
        } else if host == self.platform.upstream.addr.to_string() {
            "default"
        } else {
            panic!("an upstream nobody started: {host}")
        }
    }

    /// A wxgate with `routes` (TOML: `[[routes]]` tables, `{crm}` and `{shop}` replaced
    /// by those upstreams' URLs) and `extra_hosts`.
    async fn gate(
        &self,
        extra_hosts: &[&str],
        routes: &str,
        tweak: impl FnOnce(&mut Config),
    ) -> Gate {
        let routes = routes
            .replace("{crm}", &format!("http://{}", self.crm.addr))
            .replace("{shop}", &format!("http://{}", self.shop.addr));
        let parsed: Config = toml::from_str(&routes).expect("routes parse");
        let extra: Vec<String> = extra_hosts.iter().map(|h| h.to_string()).collect();
        proxy()
            .wechat(&self.platform)
            .tweak(move |c| {
                c.routes = parsed.routes;
                c.server.extra_hosts = extra;
                c.upstream.preserve_host = false;
                tweak(c);
            })
            .run()
            .await
    }
}

/// GET `path` on `gate` as the browser, naming `host` in the Host header.
async fn get_as(b: &mut Browser, host: &str, path: &str) -> common::Answer {
    b.request(Method::GET, path, &[("host", host)], None).await
}

/// The claims of the identity token an echo saw, decoded without verification (the
/// audience test verifies separately).
fn claims(echo: &Value) -> Value {
    let token = identity_of(echo);
    let payload = token.split('.').nth(1).expect("JWT payload");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims JSON")
}

const THREE_APPS: &str = r#"
[[routes]]
host = "crm.example.com"
upstream = "{crm}"
[[routes]]
path = "/shop/*"
upstream = "{shop}"
strip_prefix = true
audience = "shop-app"
[[routes]]
host = "*.shop.example.com"
upstream = "{shop}"
"#;

#[tokio::test]
async fn three_upstreams_behind_one_wxgate_by_host_and_path() {
    let apps = Apps::start().await;
    let gate = apps
        .gate(
            &["crm.example.com", "*.shop.example.com"],
            THREE_APPS,
            |_| {},
        )
        .await;
    let mut b = gate.phone();
    b.sign_in(&gate, "alice").await;
    let own = gate.addr.to_string();

    let cases = [
        ("crm.example.com", "/deals/7", "crm", "/deals/7"),
        ("crm.example.com", "/shop/cart", "crm", "/shop/cart"),
        (own.as_str(), "/shop/cart?x=1", "shop", "/cart?x=1"),
        (own.as_str(), "/shop", "shop", "/"),
        (own.as_str(), "/shopping", "default", "/shopping"),
        ("eu.shop.example.com", "/cart", "shop", "/cart"),
        (own.as_str(), "/orders/1", "default", "/orders/1"),
    ];
    for (host, path, app, upstream_uri) in cases {
        let a = get_as(&mut b, host, path).await;
        assert_eq!(a.status, StatusCode::OK, "{host} {path}: {}", a.text());
        let echo = a.json();
        assert_eq!(apps.which(&echo), app, "{host} {path}");
        assert_eq!(echo["uri"], upstream_uri, "{host} {path}");
        // Each app's token is for it: its audience, or its upstream's origin.
        let want_aud = match app {
            "crm" => format!("http://{}", apps.crm.addr),
            "shop" if path.starts_with("/shop") => "shop-app".to_string(),
            "shop" => format!("http://{}", apps.shop.addr),
            _ => gate.audience(),
        };
        assert_eq!(claims(&echo)["aud"], want_aud.as_str(), "{host} {path}");
    }
}

#[tokio::test]
async fn a_routes_token_verifies_with_its_own_audience_only() {
    let apps = Apps::start().await;
    let gate = apps
        .gate(
            &["crm.example.com", "*.shop.example.com"],
            THREE_APPS,
            |_| {},
        )
        .await;
    let mut b = gate.phone();
    b.sign_in(&gate, "alice").await;
    let echo = get_as(&mut b, "crm.example.com", "/x").await.json();
    let token = identity_of(&echo);
    let jwks = common::get(&gate.url("/_wxgate/jwks.json")).await.text();
    let crm = format!("http://{}", apps.crm.addr);
    let ok = crate::support::wechat::verify(&token, &jwks, &gate.issuer(), &crm)
        .expect("verifies for crm");
    assert_eq!(ok["openid"], apps.platform.openid("alice").as_str());
    assert!(
        crate::support::wechat::verify(&token, &jwks, &gate.issuer(), &gate.audience()).is_err(),
        "a crm token must not pass as the default app's"
    );
}

#[tokio::test]
async fn a_wildcard_host_corpus_routes_nothing_wrongly() {
    let apps = Apps::start().await;
    let routes = r#"
[[routes]]
host = "crm.example.com"
upstream = "{crm}"
access = "public"
[[routes]]
host = "*.shop.example.com"
upstream = "{shop}"
access = "public"
[[routes]]
access = "public"
upstream = "http://127.0.0.1:1"
path = "/never-used"
"#;
    let gate = apps
        .gate(&["crm.example.com", "*.shop.example.com"], routes, |c| {
            c.access.public_paths = vec!["/*".into()];
        })
        .await;
    let mut b = gate.browser("curl/8");
    // "refused": wxgate answers 400 itself; any other answer names the app it reached.
    let cases: &[(&str, &str)] = &[
        ("crm.example.com", "crm"),
        ("CRM.Example.COM", "crm"),
        ("crm.example.com.", "crm"),
        ("crm.example.com:443", "crm"),
        ("crm.example.com.:8080", "crm"),
        ("crm.example.com..", "default"),
        ("crm.example.comx", "default"),
        ("xcrm.example.com", "default"),
        ("crm.example.com.evil.net", "default"),
        ("a.crm.example.com", "default"),
        ("a.shop.example.com", "shop"),
        ("A.SHOP.EXAMPLE.COM", "shop"),
        ("a.b.shop.example.com", "shop"),
        ("a.shop.example.com.", "shop"),
        ("a.shop.example.com:8443", "shop"),
        ("xn--bcher-kva.shop.example.com", "shop"),
        ("shop.example.com", "default"),
        ("evilshop.example.com", "default"),
        ("a.evilshop.example.com", "default"),
        ("a-shop.example.com", "default"),
        ("shop.example.com.evil.net", "default"),
        ("a.shop.example.com.evil.net", "default"),
        (".shop.example.com", "default"),
        ("a..shop.example.com", "default"),
        ("%61.shop.example.com", "default"),
        ("a.shop.example.co", "default"),
        ("example.com", "default"),
        ("127.0.0.1", "default"),
        ("[::1]:80", "default"),
        ("a.shop.example.com:x", "refused"),
        ("a.shop.example.com/x", "refused"),
        ("a.shop.example.com@evil.net", "refused"),
    ];
    for (host, want) in cases {
        let a = get_as(&mut b, host, "/page").await;
        let got = if a.status == StatusCode::BAD_REQUEST {
            "refused"
        } else {
            assert_eq!(a.status, StatusCode::OK, "{host}: {}", a.text());
            apps.which(&a.json())
        };
        assert_eq!(got, *want, "Host: {host}");
    }
    // Raw UTF-8 in a Host (an IDN not in its xn-- form) reaches no named app.
    let idn = http::HeaderValue::from_bytes("bücher.shop.example.com".as_bytes()).unwrap();
    let req = http::Request::get(gate.url("/page"))
        .header("host", idn)
        .body(wxgate::body::empty())
        .unwrap();
    let a = common::send(&common::http1_client(), req).await;
    assert!(
        a.status == StatusCode::BAD_REQUEST || apps.which(&a.json()) == "default",
        "raw UTF-8 host: {} {}",
        a.status,
        a.text()
    );
}

#[tokio::test]
async fn each_route_has_its_own_allowlist() {
    let apps = Apps::start().await;
    let alice = apps.platform.openid("alice");
    let bob = apps.platform.openid("bob");
    let routes = format!(
        r#"
[[routes]]
path = "/crm/*"
upstream = "{{crm}}"
allowed_openids = ["{alice}"]
"#
    );
    // Nobody but bob on the default app; alice only on /crm.
    let gate = apps
        .gate(&[], &routes, move |c| c.access.allowed_openids = vec![bob])
        .await;

    let mut a = gate.phone();
    a.sign_in_at(&gate, "alice", "/crm/deals", "/crm/deals")
        .await;
    let crm = a.get("/crm/deals").await;
    assert_eq!(crm.status, StatusCode::OK, "{}", crm.text());
    assert_eq!(apps.which(&crm.json()), "crm");
    assert_eq!(a.get("/orders").await.status, StatusCode::FORBIDDEN);

    let mut b = gate.phone();
    b.sign_in(&gate, "bob").await;
    assert_eq!(b.get("/orders").await.status, StatusCode::OK);
    let refused = b.get("/crm/deals").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());

    // Someone on neither list is refused at the sign-in itself.
    let mut c = gate.phone();
    let authorize = c.begin(&gate, "/crm/x").await;
    let callback = c.consent(&authorize, "carol", "allow").await;
    assert_eq!(c.get(&callback).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn public_and_api_routes_answer_as_their_access_says() {
    let apps = Apps::start().await;
    let routes = r#"
[[routes]]
path = "/blog/*"
upstream = "{crm}"
access = "public"
[[routes]]
path = "/api/*"
upstream = "{shop}"
access = "api"
"#;
    let gate = apps.gate(&[], routes, |_| {}).await;
    let mut anon = gate.phone();
    let blog = anon.get("/blog/post").await;
    assert_eq!(blog.status, StatusCode::OK);
    assert!(seen(&blog.json(), "x-wxgate-jwt-assertion").is_empty());
    // An API route never redirects, even for a navigation.
    let api = anon.get("/api/orders").await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.json()["error"], "unauthenticated");
    assert_eq!(anon.get("/other").await.status, StatusCode::FOUND);

    let mut b = gate.phone();
    b.sign_in(&gate, "alice").await;
    let blog = b.get("/blog/post").await.json();
    assert_eq!(claims(&blog)["aud"], format!("http://{}", apps.crm.addr));
    let api = b.get("/api/orders").await;
    assert_eq!(api.status, StatusCode::OK);
    assert_eq!(apps.which(&api.json()), "shop");
}

#[tokio::test]
async fn forward_auth_applies_the_routes_of_the_original_request() {
    let apps = Apps::start().await;
    let routes = r#"
[[routes]]
host = "crm.example.com"
upstream = "{crm}"
access = "api"
[[routes]]
path = "/blog/*"
upstream = "{shop}"
access = "public"
[[routes]]
path = "/me/*"
upstream = "{shop}"
scope = "snsapi_userinfo"
"#;
    let gate = apps
        .gate(&["crm.example.com"], routes, |c| {
            c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
        })
        .await;
    let mut b = gate.browser(PHONE_UA);
    let ask = |host: &'static str, uri: &'static str| {
        vec![
            ("x-forwarded-host", host),
            ("x-forwarded-uri", uri),
            ("x-forwarded-proto", "https"),
        ]
    };
    let auth = "/_wxgate/auth";
    let public = b
        .request(Method::GET, auth, &ask("app.example.com", "/blog/1"), None)
        .await;
    assert_eq!(
        public.status,
        StatusCode::ACCEPTED,
        "a public route needs no session"
    );
    let api = b
        .request(Method::GET, auth, &ask("crm.example.com", "/x"), None)
        .await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.json()["error"],
        "unauthenticated",
        "an api route answers JSON"
    );
    let page = b
        .request(Method::GET, auth, &ask("app.example.com", "/x"), None)
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/html"));

    b.sign_in(&gate, "alice").await;
    // A route needing the profile: the base session is sent for it, as the gate would.
    let profile = b
        .request(Method::GET, auth, &ask("app.example.com", "/me/x"), None)
        .await;
    assert_eq!(profile.status, StatusCode::UNAUTHORIZED);
    assert!(
        profile
            .text()
            .contains("rd=%2Fme%2Fx&amp;scope=snsapi_userinfo")
            || profile
                .text()
                .contains("rd=%2Fme%2Fx&scope=snsapi_userinfo"),
        "{}",
        profile.text()
    );
    let mut json = ask("app.example.com", "/me/x");
    json.push(("accept", "application/json"));
    let profile = b.request(Method::GET, auth, &json, None).await;
    assert_eq!(profile.json()["error"], "scope_required");
    let ok = b
        .request(Method::GET, auth, &ask("CRM.example.com:443", "/x"), None)
        .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED);
    let token = ok
        .header("x-wxgate-jwt-assertion")
        .expect("identity")
        .to_string();
    let jwks = common::get(&gate.url("/_wxgate/jwks.json")).await.text();
    let crm = format!("http://{}", apps.crm.addr);
    crate::support::wechat::verify(&token, &jwks, &gate.issuer(), &crm)
        .expect("the crm route's audience");
}

const PROFILE_ROUTE: &str = r#"
[[routes]]
path = "/me/*"
upstream = "{crm}"
scope = "snsapi_userinfo"
"#;

/// The authorize link a navigation was sent to, checked to ask for the profile.
fn asks_for_profile(a: &common::Answer) -> String {
    assert_eq!(a.status, StatusCode::FOUND, "{}", a.text());
    let location = a.header("location").expect("Location").to_string();
    assert!(
        location.contains("&response_type=code&scope=snsapi_userinfo&state="),
        "{location}"
    );
    location
}

#[tokio::test]
async fn a_route_needing_the_profile_takes_a_base_session_to_wechat_once_more() {
    let apps = Apps::start().await;
    let gate = apps.gate(&[], PROFILE_ROUTE, |_| {}).await;
    let mut b = gate.phone();
    let base = b.sign_in(&gate, "alice").await;
    let home = b.get("/orders").await;
    assert_eq!(claims(&home.json())["scope"], "snsapi_base");

    let authorize = asks_for_profile(&b.get("/me/profile?tab=1").await);
    let callback = b.consent(&authorize, "alice", "allow").await;
    let back = b.get(&callback).await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.text());
    assert_eq!(
        back.header("location"),
        Some("/me/profile?tab=1"),
        "the same page"
    );
    let upgraded = b
        .cookie(crate::support::wechat::SESSION_COOKIE)
        .expect("a session");
    assert_ne!(upgraded, base, "a new session id");

    let page = b.get("/me/profile?tab=1").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let c = claims(&page.json());
    assert_eq!(c["scope"], "snsapi_userinfo");
    assert_eq!(c["openid"], apps.platform.openid("alice").as_str());
    assert!(c["nickname"].as_str().is_some_and(|n| !n.is_empty()), "{c}");

    // The base session ended with the new one.
    let mut old = gate.phone();
    old.set_cookie(crate::support::wechat::SESSION_COOKIE, &base);
    assert_eq!(old.get("/orders").await.status, StatusCode::FOUND);
}

#[tokio::test]
async fn an_api_request_needing_the_profile_gets_401_naming_the_scope() {
    let apps = Apps::start().await;
    let gate = apps.gate(&[], PROFILE_ROUTE, |_| {}).await;
    let mut b = gate.phone();
    b.sign_in(&gate, "alice").await;
    let a = b.get_json("/me/data?x=1").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
    let body = a.json();
    assert_eq!(body["error"], "scope_required");
    assert_eq!(body["scope"], "snsapi_userinfo");
    assert_eq!(
        body["sign_in"],
        "/_wxgate/start?rd=%2Fme%2Fdata%3Fx%3D1&scope=snsapi_userinfo"
    );
    // That link, followed by the browser, asks WeChat for the profile and returns there.
    let sign_in = body["sign_in"].as_str().unwrap().to_string();
    let authorize = asks_for_profile(&b.get(&sign_in).await);
    let callback = b.consent(&authorize, "alice", "allow").await;
    assert_eq!(
        b.get(&callback).await.header("location"),
        Some("/me/data?x=1")
    );
    assert_eq!(b.get_json("/me/data?x=1").await.status, StatusCode::OK);
}

#[tokio::test]
async fn refusing_the_profile_leaves_the_base_session_and_a_page() {
    let apps = Apps::start().await;
    let gate = apps.gate(&[], PROFILE_ROUTE, |_| {}).await;
    let mut b = gate.phone();
    let base = b.sign_in(&gate, "alice").await;
    let authorize = asks_for_profile(&b.get("/me/profile").await);
    let callback = b.consent(&authorize, "alice", "refuse").await;
    assert!(!callback.contains("code="), "{callback}");
    let page = b.get(&callback).await;
    crate::support::wechat::assert_page(&page, StatusCode::FORBIDDEN, "You are still signed in");
    assert_eq!(
        b.cookie(crate::support::wechat::SESSION_COOKIE).as_deref(),
        Some(base.as_str())
    );
    let home = b.get("/orders").await;
    assert_eq!(home.status, StatusCode::OK, "still signed in");
    assert_eq!(claims(&home.json())["scope"], "snsapi_base");
}

#[tokio::test]
async fn start_asks_for_the_profile_when_told_to() {
    let apps = Apps::start().await;
    let gate = apps.gate(&[], "", |_| {}).await;
    let mut b = gate.phone();
    b.sign_in(&gate, "alice").await;
    // Without a scope, a signed-in browser just goes on; with one, to WeChat.
    let plain = b.get("/_wxgate/start?rd=/orders").await;
    assert_eq!(plain.header("location"), Some("/orders"));
    let authorize = asks_for_profile(
        &b.get("/_wxgate/start?rd=/orders&scope=snsapi_userinfo")
            .await,
    );
    let callback = b.consent(&authorize, "alice", "allow").await;
    assert_eq!(b.get(&callback).await.header("location"), Some("/orders"));
    let home = b.get("/orders").await;
    assert_eq!(claims(&home.json())["scope"], "snsapi_userinfo");
    // Now it has the profile: no second trip.
    let again = b
        .get("/_wxgate/start?rd=/orders&scope=snsapi_userinfo")
        .await;
    assert_eq!(again.header("location"), Some("/orders"));
}

#[tokio::test]
async fn a_computer_with_a_base_session_is_told_to_open_the_profile_page_in_wechat() {
    let apps = Apps::start().await;
    let gate = apps.gate(&[], PROFILE_ROUTE, |_| {}).await;
    // A base session (as a QR sign-in would give), carried by a desktop browser.
    let mut phone = gate.phone();
    let cookie = phone.sign_in(&gate, "alice").await;
    let mut desk = gate.browser("Mozilla/5.0 (Windows NT 10.0) Chrome/120.0.0.0 Safari/537.36");
    desk.set_cookie(crate::support::wechat::SESSION_COOKIE, &cookie);
    let page = desk.get("/me/profile").await;
    crate::support::wechat::assert_page(&page, StatusCode::FORBIDDEN, "open this link in WeChat");
    // Its other pages still work.
    assert_eq!(desk.get("/orders").await.status, StatusCode::OK);
}
