//! The one log line per request on the public listener.
//!
//! With JSON logs (production: a collector reads stderr) the line is formatted here by
//! hand, in the same shape tracing-subscriber's JSON formatter writes, and written with
//! one write(2). Going through tracing's generic JSON machinery cost about a fifth of a
//! proxied request's CPU in the benchmark. Text logs (a terminal) and embedded use
//! (tests) go through tracing as usual. `RUST_LOG` filters both ways.
//!
//! `server.access_log` chooses how the JSON lines are written: `buffered` (the
//! default: batches from a background thread, see [`buffer`]), `line` (one write per
//! request, as soon as it is answered) or `off` (no request lines at all, either way).

mod buffer;

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;

use crate::config::AccessLog;
use crate::decimal;

static DIRECT_JSON: AtomicBool = AtomicBool::new(false);
static MODE: AtomicU8 = AtomicU8::new(AccessLog::Buffered as u8);

/// Called once by the binary when logs are JSON on stderr.
pub fn write_json_directly() {
    DIRECT_JSON.store(true, Ordering::Relaxed);
    if mode() == AccessLog::Buffered {
        buffer::start();
    }
}

/// `server.access_log`, at start and at each reload.
pub fn set_mode(mode: AccessLog) {
    MODE.store(mode as u8, Ordering::Relaxed);
    if mode == AccessLog::Buffered && DIRECT_JSON.load(Ordering::Relaxed) {
        buffer::start();
    }
}

fn mode() -> AccessLog {
    match MODE.load(Ordering::Relaxed) {
        m if m == AccessLog::Line as u8 => AccessLog::Line,
        m if m == AccessLog::Off as u8 => AccessLog::Off,
        _ => AccessLog::Buffered,
    }
}

/// Writes the lines buffered so far. Called when the server has drained and by the
/// binary before it exits; harmless at any time.
pub fn flush() {
    buffer::flush();
}

pub struct Entry<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub status: u16,
    pub took: Duration,
    pub upstream: Option<Duration>,
    pub request_id: &'a str,
    pub peer: SocketAddr,
}

pub fn record(e: &Entry<'_>) {
    let mode = mode();
    if mode == AccessLog::Off {
        return;
    }
    if !DIRECT_JSON.load(Ordering::Relaxed) {
        let upstream_ms = e.upstream.map(|t| t.as_secs_f64() * 1000.0);
        tracing::info!(
            target: "wxgate::server",
            method = %e.method,
            path = %e.path,
            status = e.status,
            duration_ms = e.took.as_secs_f64() * 1000.0,
            upstream_ms,
            request_id = e.request_id,
            peer = %e.peer,
            "request"
        );
        return;
    }
    if !tracing::enabled!(target: "wxgate::server", tracing::Level::INFO) {
        return;
    }
    thread_local! {
        static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
    }
    LINE.with(|line| {
        let Ok(mut s) = line.try_borrow_mut() else {
            return;
        };
        s.clear();
        json_line(&mut s, e, SystemTime::now());
        if mode == AccessLog::Buffered {
            return buffer::push(s.as_bytes());
        }
        // A log that cannot be written (closed pipe, full disk) must not stop serving.
        let _ = match stderr_fd().filter(|_| s.len() <= ATOMIC_WRITE) {
            Some(mut fd) => fd.write_all(s.as_bytes()),
            None => std::io::stderr().write_all(s.as_bytes()),
        };
    });
}

const ATOMIC_WRITE: usize = 4096;

/// A second descriptor for stderr, written without `Stderr`'s process-wide lock: the
/// worker threads contended on it (a futex wait in one request of twenty). A line is
/// one write(2), which the kernel keeps whole for files and, up to 4 KiB, for pipes.
/// A longer line (a very long path) is written under the lock as before, but in a
/// pipe another worker's line may then land inside it.
fn stderr_fd() -> Option<&'static std::fs::File> {
    use std::os::fd::AsFd;
    static FD: OnceLock<Option<std::fs::File>> = OnceLock::new();
    FD.get_or_init(|| {
        let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
        Some(std::fs::File::from(fd))
    })
    .as_ref()
}

fn json_line(s: &mut String, e: &Entry<'_>, now: SystemTime) {
    s.push_str("{\"timestamp\":\"");
    push_timestamp(s, now);
    s.push_str("\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\",\"method\":\"");
    push_escaped(s, e.method.as_str());
    s.push_str("\",\"path\":\"");
    push_escaped(s, e.path);
    s.push_str("\",\"status\":");
    decimal::push(s, u64::from(e.status));
    s.push_str(",\"duration_ms\":");
    push_ms(s, e.took);
    if let Some(u) = e.upstream {
        s.push_str(",\"upstream_ms\":");
        push_ms(s, u);
    }
    s.push_str(",\"request_id\":\"");
    push_escaped(s, e.request_id);
    s.push_str("\",\"peer\":\"");
    push_peer(s, e.peer);
    s.push_str("\"},\"target\":\"wxgate::server\"}\n");
}

/// Milliseconds with three decimals, as `{:.3}` of the float would print them, in
/// integer arithmetic.
fn push_ms(s: &mut String, d: Duration) {
    let micros = (d.as_nanos() + 500) / 1000;
    decimal::push(s, (micros / 1000) as u64);
    s.push('.');
    decimal::push_padded(s, (micros % 1000) as u64, 3);
}

fn push_peer(s: &mut String, peer: SocketAddr) {
    match peer {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                decimal::push(s, u64::from(octet));
            }
            s.push(':');
            decimal::push(s, u64::from(v4.port()));
        }
        // Rarer, and their shortest form has rules of its own: left to Display.
        v6 => {
            let _ = write!(s, "{v6}");
        }
    }
}

fn push_escaped(s: &mut String, v: &str) {
    if !v.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        s.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
}

/// RFC 3339 UTC with microseconds, like tracing-subscriber's JSON timestamps. The
/// part up to the seconds changes once a second: each thread keeps the last one.
fn push_timestamp(s: &mut String, now: SystemTime) {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    SECOND.with(|cell| {
        let Ok(mut cached) = cell.try_borrow_mut() else {
            return push_seconds(s, secs);
        };
        if cached.0 != secs {
            cached.1.clear();
            push_seconds(&mut cached.1, secs);
            cached.0 = secs;
        }
        s.push_str(&cached.1);
    });
    s.push('.');
    decimal::push_padded(s, u64::from(d.subsec_micros()), 6);
    s.push('Z');
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time.
fn push_seconds(s: &mut String, secs: u64) {
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let _ = write!(
        s,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
    );
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_print_like_the_float_formatting_they_replace() {
        for nanos in [
            0u64,
            499,
            500,
            1_000,
            1_234_567,
            1_500_000,
            999_999_999,
            12_345_678_901,
        ] {
            let d = Duration::from_nanos(nanos);
            let mut s = String::new();
            push_ms(&mut s, d);
            let float = format!("{:.3}", d.as_secs_f64() * 1000.0);
            assert_eq!(s, float, "{nanos} ns");
        }
    }

    #[test]
    fn peers_print_as_display_prints_them() {
        for peer in [
            "0.0.0.0:0",
            "127.0.0.1:4000",
            "255.255.255.255:65535",
            "[::1]:80",
            "[2001:db8::7]:443",
        ] {
            let peer: SocketAddr = peer.parse().unwrap();
            let mut s = String::new();
            push_peer(&mut s, peer);
            assert_eq!(s, peer.to_string());
        }
    }

    #[test]
    fn timestamps_stay_right_when_the_second_changes() {
        let base = UNIX_EPOCH + Duration::from_secs(1_795_638_343);
        for (after, want) in [
            (Duration::from_micros(5), "2026-11-25T20:25:43.000005Z"),
            (
                Duration::from_micros(999_999),
                "2026-11-25T20:25:43.999999Z",
            ),
            (Duration::from_secs(1), "2026-11-25T20:25:44.000000Z"),
            (Duration::from_micros(200), "2026-11-25T20:25:43.000200Z"),
            (
                Duration::from_secs(86_400 * 6),
                "2026-12-01T20:25:43.000000Z",
            ),
        ] {
            let mut s = String::new();
            push_timestamp(&mut s, base + after);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn control_characters_and_quotes_in_a_path_are_escaped() {
        let mut s = String::new();
        push_escaped(&mut s, "/a\"b\\c\u{1}d\u{7f}é");
        assert_eq!(s, "/a\\\"b\\\\c\\u0001d\u{7f}é");
        let mut plain = String::new();
        push_escaped(&mut plain, "/plain/path?x=1");
        assert_eq!(plain, "/plain/path?x=1");
    }

    #[test]
    fn dates_come_out_right_across_leap_years_and_centuries() {
        for (days, want) in [
            (0, (1970, 1, 1)),
            (59, (1970, 3, 1)),
            (11_016, (2000, 2, 29)),
            (11_017, (2000, 3, 1)),
            (20_782, (2026, 11, 25)),
            (-1, (1969, 12, 31)),
        ] {
            assert_eq!(civil_from_days(days), want, "day {days}");
        }
    }

    #[test]
    fn the_direct_line_is_the_json_tracing_would_write() {
        let e = Entry {
            method: &Method::POST,
            path: "/a\"b\\c",
            status: 502,
            took: Duration::from_micros(1500),
            upstream: None,
            request_id: "id-1",
            peer: "127.0.0.1:4000".parse().unwrap(),
        };
        let mut s = String::new();
        let now = UNIX_EPOCH + Duration::from_micros(1_795_638_343_123_456);
        let e = Entry {
            upstream: Some(Duration::from_micros(1250)),
            ..e
        };
        json_line(&mut s, &e, now);
        assert!(s.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["timestamp"], "2026-11-25T20:25:43.123456Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "wxgate::server");
        let f = &v["fields"];
        assert_eq!(f["message"], "request");
        assert_eq!(f["method"], "POST");
        assert_eq!(f["path"], "/a\"b\\c");
        assert_eq!(f["status"], 502);
        assert_eq!(f["duration_ms"], 1.5);
        assert_eq!(f["upstream_ms"], 1.25);
        assert_eq!(f["request_id"], "id-1");
        assert_eq!(f["peer"], "127.0.0.1:4000");
    }
}
