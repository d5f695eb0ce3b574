//! Memory and start-up figures for the performance table (see bench/compare.sh).
//!
//!   cargo run --release --example sessions_memory -- sessions 100000 1000000
//!       creates N sessions in the memory store, in this process, and prints the RSS
//!       growth per session (a userinfo-scope session as the mock issues them, and a
//!       base-scope one)
//!   cargo run --release --example sessions_memory -- startup WXGATE CONFIG ADMIN_ADDR
//!       starts `WXGATE serve -c CONFIG`, prints the time until `/readyz` on
//!       ADMIN_ADDR answers 200 and the idle RSS once it does, then stops it

// A measuring tool run by hand: a failed step stops it with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wxgate::config::Scope;
use wxgate::session::{MemoryStore, Session};

fn status_kb(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Strings shaped like WeChat's: 28-character openids, ~90-character tokens, a
/// 130-character avatar URL, a nickname with emoji. Distinct per `i`.
fn session(i: usize, userinfo: bool) -> Session {
    let pad = |prefix: &str, len: usize| {
        let mut s = format!("{prefix}{i:x}");
        while s.len() < len {
            s.push('x');
        }
        s
    };
    Session {
        id: pad("sid", 43),
        appid: "wx0123456789abcdef".into(),
        openid: pad("o", 28),
        unionid: userinfo.then(|| pad("u", 28)),
        scope: if userinfo {
            Scope::UserInfo
        } else {
            Scope::Base
        },
        nickname: userinfo.then(|| "王小明 🐼".into()),
        headimgurl: userinfo
            .then(|| pad("https://thirdwx.qlogo.cn/mmopen/vi_32/Q0j4TwGTfTK", 126) + "/132"),
        access_token: Some(pad("at", 89)),
        refresh_token: Some(pad("rt", 89)),
        created_at: 1_700_000_000,
        profile_at: 1_700_000_000,
        expires_at: u64::MAX / 2,
        ..Session::new("", "", Scope::Base)
    }
}

/// Each measurement runs in a fresh process: memory freed by an earlier store is not
/// always returned to the system and would hide the growth of the next one.
fn sessions(counts: &[usize]) {
    let me = std::env::current_exe().expect("own path");
    println!("| sessions | scope | RSS growth | per session |");
    println!("|---:|---|---:|---:|");
    for &n in counts {
        for scope in ["userinfo", "base"] {
            let out = Command::new(&me)
                .args(["sessions-one", &n.to_string(), scope])
                .output()
                .expect("cannot run myself");
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
    }
}

async fn sessions_one(n: usize, userinfo: bool) {
    let store = MemoryStore::new(n);
    let before = status_kb("self", "VmRSS:");
    for i in 0..n {
        store
            .save(&session(i, userinfo))
            .await
            .expect("memory store");
    }
    let grown = status_kb("self", "VmRSS:").saturating_sub(before);
    println!(
        "| {n} | snsapi_{} | {:.1} MB | {:.0} bytes |",
        if userinfo { "userinfo" } else { "base" },
        grown as f64 / 1024.0,
        grown as f64 * 1024.0 / n as f64
    );
}

fn readyz(admin: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&admin, Duration::from_millis(100)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}

fn startup(wxgate: &str, config: &str, admin: &str) {
    let admin: SocketAddr = admin.parse().expect("ADMIN_ADDR is host:port");
    let started = Instant::now();
    let mut child = Command::new(wxgate)
        .args(["serve", "-c", config])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start wxgate");
    let pid = child.id().to_string();
    // Poll with no pause: the figure is the first moment readiness is visible.
    let ready = loop {
        if readyz(admin) {
            break Some(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(10) || matches!(child.try_wait(), Ok(Some(_))) {
            break None;
        }
    };
    std::thread::sleep(Duration::from_millis(500));
    let rss = status_kb(&pid, "VmRSS:");
    let _ = child.kill();
    let _ = child.wait();
    match ready {
        Some(t) => println!(
            "start to ready: {:.1} ms; idle RSS: {:.1} MB",
            t.as_secs_f64() * 1000.0,
            rss as f64 / 1024.0
        ),
        None => {
            eprintln!("wxgate did not become ready");
            std::process::exit(1);
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("sessions") => {
            let counts: Vec<usize> = args[1..].iter().filter_map(|a| a.parse().ok()).collect();
            sessions(if counts.is_empty() {
                &[100_000, 1_000_000]
            } else {
                &counts
            });
        }
        Some("sessions-one") if args.len() == 3 => {
            let n = args[1].parse().unwrap_or(0);
            sessions_one(n, args[2] == "userinfo").await;
        }
        Some("startup") if args.len() == 4 => startup(&args[1], &args[2], &args[3]),
        _ => {
            eprintln!("usage: sessions_memory sessions [N...] | startup WXGATE CONFIG ADMIN_ADDR");
            std::process::exit(2);
        }
    }
}
