//! wxgate run as its own process, as an operator runs it: `CARGO_BIN_EXE_wxgate`, the
//! binary cargo builds for these tests.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

/// Runs `wxgate ARGS` to the end with none of the caller's WXGATE_* variables.
pub fn run_wxgate(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wxgate"));
    cmd.args(args).env("RUST_LOG", "info");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("WXGATE_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("wxgate runs")
}

/// `wxgate` run as its own process; stderr lines are collected as they come.
pub struct Wxgate {
    child: Option<Child>,
    pid: u32,
    lines: Arc<Mutex<Vec<String>>>,
    new_line: Arc<Notify>,
}

impl Wxgate {
    /// Starts `wxgate ARGS...` (JSON logs).
    pub fn spawn(args: &[&str]) -> Self {
        Self::spawn_logging(args, "info")
    }

    /// As [`Wxgate::spawn`], logging what `filter` (RUST_LOG) lets through.
    pub fn spawn_logging(args: &[&str], filter: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wxgate"))
            .arg("--log-format")
            .arg("json")
            .args(args)
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wxgate starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let new_line = Arc::new(Notify::new());
        let stderr = child.stderr.take().expect("piped stderr");
        let (l, n) = (lines.clone(), new_line.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                l.lock().unwrap().push(line);
                n.notify_waiters();
            }
            // The pipe closed: the process is gone; wake waiters so they can fail.
            l.lock().unwrap().push(String::new());
            n.notify_waiters();
        });
        Self {
            pid: child.id(),
            child: Some(child),
            lines,
            new_line,
        }
    }

    pub fn pid(&self) -> String {
        self.pid.to_string()
    }

    /// Sends a signal (`HUP`, `TERM`) with the system's `kill`.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid())
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{sig} {}", self.pid());
    }

    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Lines logged so far, parsed as JSON (every line must be JSON).
    pub fn json_lines(&self) -> Vec<Value> {
        self.log()
            .iter()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// Waits (up to 20 s) for the `n`th log line (0-based, counting from `from`) that
    /// matches; returns it and the index after it.
    pub async fn wait_for(&self, from: usize, what: impl Fn(&Value) -> bool) -> (Value, usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let notified = self.new_line.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let lines = self.log();
            for (i, line) in lines.iter().enumerate().skip(from) {
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    if what(&v) {
                        return (v, i + 1);
                    }
                }
            }
            if lines.last().is_some_and(|l| l.is_empty()) {
                panic!("wxgate exited; its log:\n{}", lines.join("\n"));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("no such log line in time; the log:\n{}", lines.join("\n"));
            }
        }
    }

    /// Waits (up to 20 s) until stderr has closed: every line the process wrote is in
    /// [`Wxgate::log`].
    pub async fn wait_for_eof(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let notified = self.new_line.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.log().last().is_some_and(|l| l.is_empty()) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("stderr still open; the log:\n{}", self.log().join("\n"));
            }
        }
    }

    /// Waits for "wxgate listening" and returns (public, admin) addresses.
    pub async fn listening(&self) -> (SocketAddr, SocketAddr) {
        let (line, _) = self
            .wait_for(0, |v| v["fields"]["message"] == "wxgate listening")
            .await;
        let addr = |k: &str| -> SocketAddr {
            let s = line["fields"][k].as_str().unwrap_or_default();
            s.trim_start_matches("Some(")
                .trim_end_matches(')')
                .parse()
                .unwrap_or_else(|_| panic!("{k} address in {line}"))
        };
        (addr("public"), addr("admin"))
    }

    /// Waits for the process to exit (up to 20 s).
    pub async fn exit_status(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("not yet waited for");
        let waited = tokio::task::spawn_blocking(move || child.wait());
        match tokio::time::timeout(Duration::from_secs(20), waited).await {
            Ok(Ok(Ok(status))) => status,
            _ => panic!(
                "wxgate did not exit in time; its log:\n{}",
                self.log().join("\n")
            ),
        }
    }
}

impl Drop for Wxgate {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
