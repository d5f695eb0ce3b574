//! Skipping a test whose system program (or library) is missing, so that nobody misses it.
//!
//! libtest captures what a passing test prints with `print!`/`eprint!` and throws it
//! away, so a skip said that way is invisible in `cargo test`'s normal output. The line
//! is written straight to the process's stderr instead, which libtest does not capture:
//! it shows among the `test ... ok` lines of every run. Under `CI` a skip is a failure.

use std::io::Write as _;
use std::path::PathBuf;

/// The line every skip prints; search a test log for it.
pub const MARK: &str = "SKIPPED";

/// Skips loudly, except under CI where a missing prerequisite is a failure.
pub fn skip(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI is set and this test cannot run: {why}");
    }
    // libtest names each test's thread after the test.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let line = format!("\n*** {MARK} {test}: {why} (with CI set this fails) ***\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// A program on PATH (and in the sbin folders, where Debian puts nginx). When it is
/// missing: a loud skip, or a failure under CI.
pub fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    let found = dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file());
    if found.is_none() {
        skip(&format!("{name} not found"));
    }
    found
}
