//! The `wxgate` command line as an operator meets it: `check` before a deploy, `keygen`
//! for the secrets, `serve` refusing clearly, help and version everywhere.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::process::run_wxgate as wxgate;

use base64::Engine as _;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A folder of its own for this test's files.
fn scratch(name: &str) -> PathBuf {
    crate::support::scratch_dir(&format!("cli-{name}"))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("utf-8 path").to_string()
}

/// A valid config: the smallest an operator could deploy.
fn valid() -> String {
    crate::support::config_head("https://app.example.com", "http://127.0.0.1:3000")
        + "secret = \"0123456789abcdef0123456789abcdef-cli\"\n"
}

#[test]
fn check_accepts_the_shipped_example_and_prints_a_summary() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/proxy.example.toml");
    let out = wxgate(&["check", "-c", example]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("OK"), "{text}");
    for what in [
        "listen", "admin", "upstream", "wechat", "identity", "access",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(what)),
            "summary names {what}: {text}"
        );
    }
    assert!(text.contains("https://app.example.com"), "{text}");
}

/// The TOML block of README.md that starts with `# name`.
fn readme_toml(name: &str) -> String {
    let readme = include_str!("../../README.md");
    let start = readme
        .find(&format!("```toml\n# {name}\n"))
        .unwrap_or_else(|| panic!("README has a `# {name}` TOML block"));
    let body = &readme[start + "```toml\n".len()..];
    body[..body.find("```").expect("the block ends")].to_string()
}

#[test]
fn the_readmes_minimal_config_passes_check_and_its_mistake_reads_as_promised() {
    let dir = scratch("readme");
    let text = readme_toml("wxgate.toml");
    let file = write(&dir, "wxgate.toml", &text);
    let out = wxgate(&["check", "-c", &file]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // "ttl = \"soon\" under [identity]": the line README shows, key and all.
    let lines = text.lines().count();
    let broken = write(
        &dir,
        "broken.toml",
        &format!("{text}[identity]\nttl = \"soon\"\n"),
    );
    let out = wxgate(&["check", "-c", &broken]);
    let err = stderr(&out);
    let promised = format!(
        "identity.ttl: line {}: \"soon\" is not a duration (e.g. \"30s\", \"5m\", \"7d\")",
        lines + 2
    );
    assert!(err.contains(&promised), "{err}");
    let readme = include_str!("../../README.md");
    assert!(
        readme.contains(
            "identity.ttl: line 12: \"soon\" is not a duration (e.g. \"30s\", \"5m\", \"7d\")"
        ),
        "README shows the message as check prints it"
    );
    assert_eq!(lines + 2, 12, "README's line number is the real one");
}

#[test]
fn check_lists_every_problem_of_a_broken_file_with_its_key() {
    let dir = scratch("broken");
    let file = write(
        &dir,
        "broken.toml",
        "[server]\nlisten = \"nope\"\npublic_url = \"ftp://x\"\n[upstream]\nurl = \"\"\n[wechat]\nappid = \"\"\n",
    );
    let out = wxgate(&["check", "-c", &file]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    for key in [
        "server.listen",
        "server.public_url",
        "upstream.url",
        "wechat.appid",
        "wechat.secret",
    ] {
        assert!(
            text.lines().any(|l| l.contains(&format!("{key}: "))),
            "{key} is named: {text}"
        );
    }
    assert!(stdout(&out).is_empty(), "no summary for a broken file");
}

#[test]
fn check_names_the_line_of_a_toml_error_and_the_full_key_of_an_unknown_one() {
    let dir = scratch("toml");
    let syntax = write(
        &dir,
        "syntax.toml",
        "[server]\nlisten = \"x\"\npublic_url = \n",
    );
    let out = wxgate(&["check", "-c", &syntax]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 3"), "{}", stderr(&out));

    let unknown = write(
        &dir,
        "unknown.toml",
        &format!("{}[access]\npublic_path = [\"/x\"]\n", valid()),
    );
    let out = wxgate(&["check", "-c", &unknown]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(text.contains("access.public_path: "), "{text}");
    assert!(text.contains("line 15"), "{text}");
}

#[test]
fn check_names_the_key_of_each_mistake_never_its_value() {
    let dir = scratch("mistakes");
    // (what replaces what in a valid file, the key `check` must name)
    let table: &[(&str, &str, &str)] = &[
        (
            "[session]\n",
            "[session]\nsame_site = \"sideways\"\n",
            "session.same_site",
        ),
        (
            "[server]\n",
            "[server]\nworkers = \"4\"\n",
            "server.workers",
        ),
        (
            "[admin]\nlisten = \"127.0.0.1:0\"",
            "[admin]\nlisten = 127.0.0.1:8180",
            "admin.listen",
        ),
        (
            "[wechat]\n",
            "[wechat]\nverify_files = [\"MP_verify_abc.txt\"]\n",
            "wechat.verify_files",
        ),
        ("", "[identity]\nttl = \"soon\"\n", "identity.ttl"),
        (
            "",
            "[access]\nallowed_openids = \"o123\"\n",
            "access.allowed_openids",
        ),
    ];
    for (i, (from, to, key)) in table.iter().enumerate() {
        let text = if from.is_empty() {
            valid() + to
        } else {
            assert!(valid().contains(from), "{from:?}");
            valid().replacen(from, to, 1)
        };
        let file = write(&dir, &format!("mistake{i}.toml"), &text);
        let out = wxgate(&["check", "-c", &file]);
        assert_eq!(out.status.code(), Some(1), "{to}");
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "one line for {to:?}: {err}");
        assert!(
            lines[0].starts_with(&format!("{file}: {key}: line ")),
            "{to:?} names {key} and its line: {err}"
        );
    }
}

#[test]
fn check_and_serve_refuse_secure_cookies_on_an_http_site_in_one_line_naming_both_keys() {
    let dir = scratch("secure-http");
    let text =
        valid().replace("https://app.example.com", "http://app.example.com") + "secure = true\n";
    let file = write(&dir, "wxgate.toml", &text);
    for command in ["check", "serve"] {
        let out = wxgate(&["--log-format", "text", command, "-c", &file]);
        assert_eq!(out.status.code(), Some(1), "{command}");
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{command}: {err}");
        assert!(
            lines[0].contains("session.secure") && lines[0].contains("server.public_url"),
            "{command}: {err}"
        );
    }
}

#[test]
fn keygen_prints_a_secret_and_a_signing_key_that_check_accepts() {
    let out = wxgate(&["keygen"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let secret = text
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .expect("a secret line");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret.trim())
        .expect("the secret is base64");
    assert!(bytes.len() >= 32, "{} bytes", bytes.len());
    let begin = text
        .find("-----BEGIN PRIVATE KEY-----")
        .expect("a PEM block");
    let end = text.find("-----END PRIVATE KEY-----").expect("its end") + 25;
    let pem = &text[begin..end];

    let dir = scratch("keygen");
    write(&dir, "signing.pem", pem);
    let config = write(
        &dir,
        "wxgate.toml",
        &format!(
            "{}[identity]\nsigning_key_file = \"signing.pem\"\n",
            valid().replace("0123456789abcdef0123456789abcdef-cli", secret.trim())
        ),
    );
    let out = wxgate(&["check", "-c", &config]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(summary.contains("ES256"), "{summary}");
    assert!(
        summary.contains("configured key"),
        "the key is used: {summary}"
    );

    // Two runs never print the same secrets.
    assert_ne!(stdout(&wxgate(&["keygen"])), text);
}

#[test]
fn serve_on_a_busy_port_says_so_in_one_line_and_fails() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let dir = scratch("busy");
    let config = write(
        &dir,
        "wxgate.toml",
        &valid().replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"{addr}\""),
            1,
        ),
    );
    let out = wxgate(&["--log-format", "text", "serve", "-c", &config]);
    assert_ne!(out.status.code(), Some(0));
    let text = stderr(&out);
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(&addr)).collect();
    assert_eq!(lines.len(), 1, "one line names {addr}: {text}");
    assert!(lines[0].contains("server.listen"), "{text}");
    // Once, in words, with what to do.
    assert!(
        lines[0].contains("another program already listens there"),
        "{text}"
    );
    assert!(!lines[0].contains("os error"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    drop(busy);
}

#[test]
fn every_command_has_help_and_the_binary_a_version() {
    let out = wxgate(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out).trim(),
        format!("wxgate {}", env!("CARGO_PKG_VERSION"))
    );
    for command in [
        &[][..],
        &["serve"],
        &["check"],
        &["demo"],
        &["mock-wechat"],
        &["keygen"],
        &["sessions"],
        &["sessions", "count"],
        &["sessions", "revoke"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let out = wxgate(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("Usage: wxgate"), "{args:?}: {text}");
    }
    let serve = stdout(&wxgate(&["serve", "--help"]));
    assert!(serve.contains("--config"), "{serve}");
    let revoke = stdout(&wxgate(&["sessions", "revoke", "--help"]));
    assert!(revoke.contains("--openid"), "{revoke}");

    // Every option of every command says what it is for.
    for command in [
        &["serve"][..],
        &["check"],
        &["demo"],
        &["mock-wechat"],
        &["sessions", "count"],
        &["sessions", "revoke"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let help = stdout(&wxgate(&args));
        for line in help.lines().filter(|l| l.trim_start().starts_with('-')) {
            let described = line
                .trim()
                .split("  ")
                .filter(|part| !part.trim().is_empty())
                .count()
                >= 2;
            assert!(described, "{args:?}: no description: {line:?}");
        }
    }
}

#[test]
fn sessions_count_with_the_memory_store_explains_why_it_cannot() {
    let dir = scratch("sessions");
    let config = write(&dir, "wxgate.toml", &valid());
    let out = wxgate(&["sessions", "count", "-c", &config]);
    assert_ne!(out.status.code(), Some(0));
    let text = stderr(&out);
    assert!(text.contains("session.store"), "{text}");
    assert!(text.contains("redis"), "names the store that works: {text}");
    assert!(
        stdout(&out).is_empty(),
        "no count printed: {}",
        stdout(&out)
    );
}

/// Skips, when asked to by the test below (otherwise passes doing nothing).
#[test]
fn skip_probe() {
    if std::env::var_os("WXGATE_SKIP_PROBE").is_some() {
        crate::support::skip::skip("skip-probe-program not found");
    }
}

#[test]
fn a_skipped_test_is_visible_in_cargo_tests_normal_output_and_fails_under_ci() {
    // This very test binary, run as `cargo test` runs it: output captured.
    let run = |ci: bool| {
        let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
        cmd.args(["--exact", "cli::skip_probe", "--test-threads", "1"])
            .env("WXGATE_SKIP_PROBE", "1")
            .env_remove("CI");
        if ci {
            cmd.env("CI", "true");
        }
        cmd.output().expect("the test binary runs")
    };
    let out = run(false);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let all = stdout(&out) + &stderr(&out);
    let line = all
        .lines()
        .find(|l| l.contains(crate::support::skip::MARK))
        .unwrap_or_else(|| panic!("no skip line in the normal output:\n{all}"));
    assert!(
        line.contains("skip_probe") && line.contains("skip-probe-program not found"),
        "names the test and the reason: {line}"
    );

    let under_ci = run(true);
    assert_ne!(under_ci.status.code(), Some(0), "a skip under CI fails");
    assert!(stdout(&under_ci).contains("FAILED") || stdout(&under_ci).contains("failed"));
}
