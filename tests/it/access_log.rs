//! The access log as operators read it: `wxgate serve` with JSON logs on a pipe, one
//! line per request. Buffered (the default), lines show up while it serves and none is
//! lost when it is stopped; `line` writes each at once; `off` writes none.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::support::process::Wxgate;
use crate::support::{start_upstream, Upstream};
use serde_json::Value;
use wxgate::mock::{self, MockConfig, MockWechat};

struct Site {
    dir: PathBuf,
    upstream: Upstream,
    mock_addr: std::net::SocketAddr,
    mock: MockWechat,
}

impl Drop for Site {
    fn drop(&mut self) {
        self.mock.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Site {
    async fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("wxgate-access-log-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (mock_addr, mock) = mock::spawn(MockConfig::default()).await.expect("mock");
        Self {
            dir,
            upstream: start_upstream().await,
            mock_addr,
            mock,
        }
    }

    /// Starts `wxgate serve` with every path public and `server` lines added to
    /// `[server]`; returns it with its public base URL.
    async fn serve(&self, server: &str) -> (Wxgate, String) {
        let config = self.dir.join("wxgate.toml");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://wxgate.test\"\n{server}\n\
[admin]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://{}\"\n\
[session]\nsecret = \"0123456789abcdef0123456789abcdef-access\"\n{}\
[access]\npublic_paths = [\"/*\"]\n",
            self.upstream.addr,
            crate::support::wechat::wechat_toml(self.mock_addr, &self.mock),
        );
        std::fs::write(&config, text).expect("write config");
        let wxgate = Wxgate::spawn(&["serve", "-c", config.to_str().expect("utf-8 path")]);
        let (public, _admin) = wxgate.listening().await;
        (wxgate, format!("http://{public}"))
    }
}

/// Sends `n` requests, each with its own `X-Request-Id` (`{tag}-{i}`), answered 200.
async fn send(base: &str, tag: &str, n: usize) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("{tag}-{i}");
        let resp = client
            .get(format!("{base}/page/{i}"))
            .header("x-request-id", &id)
            .send()
            .await
            .expect("answered");
        assert_eq!(resp.status(), 200);
        ids.push(id);
    }
    ids
}

fn is_request_line(v: &Value) -> bool {
    v["fields"]["message"] == "request" && v["target"] == "wxgate::server"
}

/// The request ids of every access line logged so far.
fn logged_ids(wxgate: &Wxgate) -> HashSet<String> {
    wxgate
        .json_lines()
        .iter()
        .filter(|v| is_request_line(v))
        .filter_map(|v| v["fields"]["request_id"].as_str().map(str::to_owned))
        .collect()
}

fn assert_all_logged(wxgate: &Wxgate, ids: &[String]) {
    let logged = logged_ids(wxgate);
    let missing: Vec<_> = ids.iter().filter(|id| !logged.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} lines missing, e.g. {:?}; the log:\n{}",
        missing.len(),
        ids.len(),
        missing.first(),
        wxgate.log().join("\n")
    );
}

#[tokio::test]
async fn buffered_lines_show_up_while_wxgate_keeps_serving() {
    let site = Site::new("shows").await;
    let (wxgate, base) = site.serve("").await;
    let ids = send(&base, "shows", 3).await;
    // No stop, no more traffic: the writer's own timer brings them out (the wait is
    // a generous deadline, not a measurement).
    for id in &ids {
        let (line, _) = wxgate
            .wait_for(0, |v| {
                is_request_line(v) && v["fields"]["request_id"] == *id
            })
            .await;
        assert_eq!(line["fields"]["status"], 200, "{line}");
        assert!(
            line["fields"]["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/page/")),
            "{line}"
        );
    }
}

async fn no_line_is_lost_when_stopped_by(sig: &str) {
    let site = Site::new(&format!("stop-{sig}")).await;
    let (mut wxgate, base) = site.serve("").await;
    let ids = send(&base, sig, 300).await;
    wxgate.signal(sig);
    let status = wxgate.exit_status().await;
    assert_eq!(status.code(), Some(0), "log:\n{}", wxgate.log().join("\n"));
    // The reader thread has seen the pipe close: every line written is in.
    wxgate.wait_for_eof().await;
    assert_all_logged(&wxgate, &ids);
    let lines = wxgate.log();
    let stopped = lines
        .iter()
        .position(|l| l.contains("\"stopped\""))
        .expect("a stopped line");
    let last_request = lines
        .iter()
        .rposition(|l| l.contains("\"message\":\"request\""))
        .expect("request lines");
    assert!(
        last_request < stopped,
        "every request line before the stop is announced"
    );
}

#[tokio::test]
async fn sigterm_writes_every_buffered_line_before_exiting() {
    no_line_is_lost_when_stopped_by("TERM").await;
}

#[tokio::test]
async fn sigint_writes_every_buffered_line_before_exiting() {
    no_line_is_lost_when_stopped_by("INT").await;
}

#[tokio::test]
async fn line_mode_writes_each_line_and_off_writes_none() {
    let site = Site::new("modes").await;
    let (mut line, base) = site.serve("access_log = \"line\"").await;
    let ids = send(&base, "line", 5).await;
    for id in &ids {
        line.wait_for(0, |v| {
            is_request_line(v) && v["fields"]["request_id"] == *id
        })
        .await;
    }
    line.signal("TERM");
    assert_eq!(line.exit_status().await.code(), Some(0));

    let (mut off, base) = site.serve("access_log = \"off\"").await;
    send(&base, "off", 5).await;
    off.signal("TERM");
    assert_eq!(off.exit_status().await.code(), Some(0));
    off.wait_for_eof().await;
    assert!(logged_ids(&off).is_empty(), "{:?}", off.log());
    assert!(
        off.log().iter().any(|l| l.contains("\"stopped\"")),
        "the other lines are still there"
    );
}

#[test]
fn check_names_the_key_of_an_unknown_access_log_mode() {
    let dir = std::env::temp_dir().join(format!("wxgate-access-log-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("wxgate.toml");
    std::fs::write(
        &path,
        "[server]\npublic_url = \"https://app.example.com\"\naccess_log = \"sometimes\"\n\
[upstream]\nurl = \"http://127.0.0.1:3000\"\n\
[wechat]\nappid = \"wx0123456789abcdef\"\nsecret = \"s\"\n",
    )
    .expect("write config");
    let out = crate::support::process::run_wxgate(&["check", "-c", path.to_str().expect("utf-8")]);
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("server.access_log"), "{stderr}");
}
