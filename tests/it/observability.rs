//! What an operator watches: Prometheus metrics on the admin listener after real
//! sign-ins and traffic, and JSON logs that carry WeChat's request id (`rid`).

use crate::support::harness::Site;
use crate::support::process::Wxgate;
use crate::support::proxy;
use crate::support::wechat::{self, WalkingBrowser};
use wxgate::mock::{self, MockConfig};

/// The value of one sample (`name{labels}` exactly as rendered), 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a number"))
        .unwrap_or(0.0)
}

async fn scrape(gate: &Site) -> String {
    let page = WalkingBrowser::new().get(&gate.admin_url("/metrics")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain"),
        "Prometheus text format"
    );
    page.body
}

const SERIES: &[&str] = &[
    "wxgate_signins_total{outcome=\"success\"}",
    "wxgate_wechat_api_calls_total{endpoint=\"access_token\",errcode=\"0\"}",
    "wxgate_sessions_created_total{store=\"memory\"}",
    "wxgate_identity_tokens_total{source=\"signed\"}",
    "wxgate_identity_tokens_total{source=\"cached\"}",
    "wxgate_upstream_duration_seconds_count",
    "wxgate_http_requests_total{class=\"2xx\"}",
    "wxgate_http_requests_total{class=\"3xx\"}",
];

#[tokio::test]
async fn metrics_count_sign_ins_wechat_calls_sessions_tokens_and_upstream_requests() {
    let gate = proxy().run_site().await;
    let before = scrape(&gate).await;

    // A sign-in (three redirects, then the app), then three more pages.
    let browser = WalkingBrowser::new();
    wechat::sign_in(&browser, &gate.public_url, "/start").await;
    for path in ["/a", "/b", "/c"] {
        assert_eq!(browser.get(&gate.url(path)).await.status, 200);
    }

    let after = scrape(&gate).await;
    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    for series in SERIES {
        assert!(
            after.lines().any(|l| l.starts_with(series)),
            "{series} is exported:\n{after}"
        );
    }
    assert!(delta(SERIES[0]) >= 1.0, "a successful sign-in");
    assert!(delta(SERIES[1]) >= 1.0, "a code redeemed");
    assert!(delta(SERIES[2]) >= 1.0, "a session created");
    // Four forwarded pages for one session: one signature, reused after that.
    assert!(delta(SERIES[3]) >= 1.0, "a token signed");
    assert!(delta(SERIES[4]) >= 3.0, "tokens reused from the cache");
    assert!(delta(SERIES[5]) >= 4.0, "four upstream requests timed");
    assert!(delta(SERIES[6]) >= 4.0, "four 2xx responses");
    assert!(delta(SERIES[7]) >= 2.0, "the sign-in's redirects");
}

#[tokio::test]
async fn a_wechat_error_is_logged_as_json_with_wechats_request_id() {
    let (mock_addr, mock) = mock::spawn(MockConfig::default()).await.expect("mock");
    let upstream = crate::support::start_upstream().await;
    let dir = std::env::temp_dir().join(format!("wxgate-obs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("wxgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://wxgate.test\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
[upstream]\nurl = \"http://{}\"\n[access]\npublic_paths = [\"/public/*\"]\n\
[session]\nsecret = \"0123456789abcdef0123456789abcdef-obs\"\n{}",
            upstream.addr,
            wechat::wechat_toml(mock_addr, &mock)
        ),
    )
    .expect("write config");
    let wxgate = Wxgate::spawn(&["serve", "-c", config.to_str().expect("utf-8")]);
    let (public, _) = wxgate.listening().await;

    // The code is refused (40029), and so is the one fresh authorization's code.
    mock.inject("access_token", 40029, 2);
    let browser =
        WalkingBrowser::new().with_alias("http://wxgate.test", &format!("http://{public}"));
    let pages = browser.walk("http://wxgate.test/orders", |_| false).await;
    let last = pages.last().expect("a page");
    assert_ne!(last.status, 200, "no sign-in: {}", last.body);
    assert_eq!(mock.calls("access_token"), 2);

    let (line, next) = wxgate
        .wait_for(0, |v| v["fields"]["errcode"] == 40029)
        .await;
    let rid = line["fields"]["rid"].as_str().unwrap_or_default();
    assert!(!rid.is_empty() && rid != "-", "the rid is logged: {line}");
    assert_eq!(line["fields"]["endpoint"], "access_token", "{line}");
    assert!(
        line["timestamp"].is_string() && line["level"].is_string(),
        "{line}"
    );
    // Both refusals are logged, each with its own rid.
    let (second, _) = wxgate
        .wait_for(next, |v| v["fields"]["errcode"] == 40029)
        .await;
    assert_ne!(second["fields"]["rid"], line["fields"]["rid"]);
    // The access log line of the first page, written straight to stderr.
    let (access, _) = wxgate
        .wait_for(0, |v| {
            v["fields"]["message"] == "request" && v["fields"]["path"] == "/orders"
        })
        .await;
    assert_eq!(access["target"], "wxgate::server", "{access}");
    assert_eq!(access["fields"]["method"], "GET", "{access}");
    assert!(
        access["fields"]["status"]
            .as_u64()
            .is_some_and(|s| s >= 300),
        "{access}"
    );
    assert!(access["fields"]["duration_ms"].is_number(), "{access}");
    assert!(
        access["fields"]["request_id"]
            .as_str()
            .is_some_and(|r| r.len() == 32),
        "{access}"
    );
    // Only a request that reached the upstream says how long the upstream took.
    assert!(access["fields"].get("upstream_ms").is_none(), "{access}");
    let proxied = crate::support::get(&format!("http://{public}/public/report")).await;
    assert_eq!(proxied.status, 200, "{:?}", proxied.body);
    let (access, _) = wxgate
        .wait_for(0, |v| {
            v["fields"]["message"] == "request" && v["fields"]["path"] == "/public/report"
        })
        .await;
    let (upstream_ms, duration_ms) = (
        access["fields"]["upstream_ms"].as_f64(),
        access["fields"]["duration_ms"].as_f64(),
    );
    assert!(
        upstream_ms.zip(duration_ms).is_some_and(|(u, d)| u <= d),
        "{access}"
    );
    // Every line is JSON, and the secret is in none of them.
    let secret = mock.config().secret.clone();
    for l in wxgate.json_lines() {
        assert!(!l.to_string().contains(&secret), "secret logged: {l}");
    }
    mock.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
