use super::*;

const MINIMAL: &str = r#"
[server]
public_url = "https://app.example.com"
[upstream]
url = "http://127.0.0.1:3000"
[wechat]
appid = "wx0000000000000000"
secret = "s3cret"
"#;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn problems(text: &str) -> Vec<String> {
    match from_toml(text, Path::new("."), &env(&[])) {
        Ok(_) => vec![],
        Err(e) => e.problems(),
    }
}

#[test]
fn a_minimal_file_gets_the_documented_defaults() {
    let c = from_toml(MINIMAL, Path::new("."), &env(&[])).unwrap();
    assert_eq!(c.server.listen, "0.0.0.0:8080");
    assert_eq!(c.admin.listen, "127.0.0.1:9090");
    assert_eq!(c.session.store, StoreKind::Memory);
    assert_eq!(c.session.cookie_name, "_wxgate");
    assert_eq!(c.session.ttl.get().as_secs(), 7 * 86400);
    assert_eq!(c.identity.header, "X-Wxgate-Jwt-Assertion");
    assert_eq!(c.identity.algorithm, Algorithm::ES256);
    assert_eq!(c.identity.audience, "http://127.0.0.1:3000");
    assert_eq!(c.wechat.scope, Scope::Base);
    assert_eq!(c.desktop.mode, DesktopMode::Qr);
    assert_eq!(c.desktop.max_tickets, 50_000);
    assert!(c.cookie_secure(), "https public_url means Secure cookies");
    assert!(
        c.session.secret_generated,
        "memory store without a secret generates one"
    );
    assert_eq!(c.public().host, "app.example.com");
}

#[test]
fn unknown_keys_are_refused_with_their_name_and_line() {
    let text = format!("{MINIMAL}\n[access]\npublic_path = []\n");
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("access.public_path"), "{p:?}");
    assert!(p[0].contains("line 11"), "{p:?}");
}

#[test]
fn toml_syntax_errors_name_the_line() {
    let p = problems("[server]\nlisten = \n");
    assert_eq!(p.len(), 1);
    assert!(p[0].contains("line 2"), "{p:?}");
}

#[test]
fn every_semantic_problem_is_listed_at_once() {
    let text = r#"
[server]
listen = "nope"
public_url = "ftp://x"
trusted_proxies = ["10.0.0.0/8", "banana"]
[upstream]
url = ""
[wechat]
appid = ""
lang = "fr"
[session]
store = "redis"
[desktop]
max_tickets = 0
[access]
public_paths = ["static/*", "/a/*/b"]
"#;
    let p = problems(text).join("\n");
    for key in [
        "server.listen:",
        "server.public_url:",
        "server.trusted_proxies[1]:",
        "upstream.url:",
        "wechat.appid:",
        "wechat.secret:",
        "wechat.lang:",
        "session.secret:",
        "desktop.max_tickets:",
        "access.public_paths[0]:",
        "access.public_paths[1]:",
    ] {
        assert!(p.contains(key), "missing {key} in:\n{p}");
    }
}

#[test]
fn secrets_come_from_env_first_then_file_then_inline() {
    let dir = std::env::temp_dir().join(format!("wxgate-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("secret.txt"), "from-file\n").unwrap();
    let text = MINIMAL.replace(
        "secret = \"s3cret\"",
        "secret = \"inline\"\nsecret_file = \"secret.txt\"",
    );
    let c = from_toml(&text, &dir, &env(&[])).unwrap();
    assert_eq!(c.wechat.secret, "from-file");
    let c = from_toml(&text, &dir, &env(&[("WXGATE_WECHAT_SECRET", "from-env")])).unwrap();
    assert_eq!(c.wechat.secret, "from-env");
    let c = from_toml(MINIMAL, &dir, &env(&[])).unwrap();
    assert_eq!(c.wechat.secret, "s3cret");
    let missing = MINIMAL.replace("secret = \"s3cret\"", "secret_file = \"nope.txt\"");
    let p = match from_toml(&missing, &dir, &env(&[])) {
        Err(e) => e.problems().join("\n"),
        Ok(_) => panic!("missing secret file accepted"),
    };
    assert!(
        p.contains("wechat.secret_file: cannot read nope.txt"),
        "{p}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn session_secrets_must_be_32_bytes_raw_or_base64() {
    assert!(decode_secret("short").is_err());
    assert_eq!(decode_secret(&"x".repeat(32)).unwrap().len(), 32);
    let b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    assert_eq!(decode_secret(b64).unwrap(), (0u8..32).collect::<Vec<_>>());
}

#[test]
fn verify_file_names_follow_wechats_pattern() {
    assert!(is_verify_file_name("MP_verify_abc123.txt"));
    assert!(!is_verify_file_name("MP_verify_.txt"));
    assert!(!is_verify_file_name("MP_verify_../x.txt"));
    assert!(!is_verify_file_name("other.txt"));
}

#[test]
fn the_example_file_passes_check() {
    let text = include_str!("../../proxy.example.toml");
    let c = from_toml(text, Path::new("."), &env(&[])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.server.public.as_ref().unwrap().origin,
        "https://app.example.com"
    );
}

#[test]
fn every_config_key_is_documented_in_the_readme_reference() {
    let readme = include_str!("../../README.md");
    // Serialising the defaults yields every key of every section (Options included
    // once filled), so a new field without a README row fails here.
    let mut c = Config::default();
    c.server.max_body_size = Some("1MB".into());
    c.server.max_connections = Some(1);
    c.server.workers = Some(2);
    c.server.tls_cert_file = Some("c".into());
    c.server.tls_key_file = Some("k".into());
    c.wechat.secret_file = Some("f".into());
    c.session.secret_file = Some("f".into());
    c.session.secure = Some(true);
    c.desktop.website_secret_file = Some("f".into());
    let value = toml::Value::try_from(&c).unwrap();
    let mut missing = vec![];
    for (section, table) in value.as_table().unwrap() {
        for key in table.as_table().unwrap().keys() {
            let row = format!("| `{section}.{key}` |");
            if !readme.contains(&row) {
                missing.push(row);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README's configuration reference lacks: {missing:?}"
    );
}

#[test]
fn admin_and_public_may_both_ask_for_an_ephemeral_port_but_not_share_a_fixed_one() {
    let text = |port: u16| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:{port}\"\n{}",
            MINIMAL.replace(
                "[server]\n",
                &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n")
            )
        )
    };
    assert!(problems(&text(0)).is_empty(), "{:?}", problems(&text(0)));
    let fixed = problems(&text(8080));
    assert!(
        fixed.iter().any(|p| p.contains("admin.listen")),
        "{fixed:?}"
    );
}

#[test]
fn workers_default_to_the_cores_and_zero_is_refused_by_name() {
    let c = from_toml(MINIMAL, Path::new("."), &env(&[])).unwrap();
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(c.server.worker_count(), cores);
    let one = MINIMAL.replace("[server]\n", "[server]\nworkers = 1\n");
    let c = from_toml(&one, Path::new("."), &env(&[])).unwrap();
    assert_eq!(c.server.worker_count(), 1);
    let zero = MINIMAL.replace("[server]\n", "[server]\nworkers = 0\n");
    let p = problems(&zero);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("server.workers"), "{p:?}");
}

#[test]
fn request_limits_default_as_documented_and_bad_values_are_named() {
    let c = from_toml(MINIMAL, Path::new("."), &env(&[])).unwrap();
    assert_eq!(c.server.max_header_len, 64 * 1024);
    assert_eq!(c.server.body_timeout.get().as_secs(), 60);
    assert_eq!(c.upstream.body_timeout.get().as_secs(), 60);
    assert_eq!(c.upstream.upgrades, ["websocket"]);

    let set = |server: &str, upstream: &str| {
        MINIMAL
            .replace("[server]\n", &format!("[server]\n{server}\n"))
            .replace("[upstream]\n", &format!("[upstream]\n{upstream}\n"))
    };
    let c = from_toml(
        &set(
            "max_header_bytes = \"16KB\"",
            "upgrades = [\"websocket\", \"foo/2\"]",
        ),
        Path::new("."),
        &env(&[]),
    )
    .unwrap();
    assert_eq!(c.server.max_header_len, 16 * 1024);

    for (server, upstream, key) in [
        ("max_header_bytes = \"512\"", "", "server.max_header_bytes"),
        ("max_header_bytes = \"2MB\"", "", "server.max_header_bytes"),
        ("max_header_bytes = \"lots\"", "", "server.max_header_bytes"),
        ("body_timeout = \"0s\"", "", "server.body_timeout"),
        ("", "body_timeout = \"0s\"", "upstream.body_timeout"),
        (
            "",
            "upgrades = [\"websocket\", \"h2c\"]",
            "upstream.upgrades[1]",
        ),
        ("", "upgrades = [\"H2C\"]", "upstream.upgrades[0]"),
        ("", "upgrades = [\"HTTP/2.0\"]", "upstream.upgrades[0]"),
        ("", "upgrades = [\"web socket\"]", "upstream.upgrades[0]"),
    ] {
        let p = problems(&set(server, upstream));
        assert_eq!(p.len(), 1, "{server} {upstream}: {p:?}");
        assert!(p[0].starts_with(key), "{server} {upstream}: {p:?}");
    }
}
