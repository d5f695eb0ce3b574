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
    assert_eq!(c.server.public.origin, "https://app.example.com");
}

/// The defaults with every optional key filled: serialised, every key of every section.
fn every_key_filled() -> file::Config {
    let mut c = file::Config::default();
    c.server.max_body_size = Some("1MB".into());
    c.server.max_connections = Some(1);
    c.server.workers = Some(2);
    c.server.tls_cert_file = Some("c".into());
    c.server.tls_key_file = Some("k".into());
    c.wechat.secret_file = Some("f".into());
    c.session.secret_file = Some("f".into());
    c.session.secure = Some(true);
    c.desktop.website_secret_file = Some("f".into());
    c.account = Some(file::AccountConfig {
        token_endpoint_secret_file: Some("f".into()),
        ..file::AccountConfig::default()
    });
    c.routes = vec![RouteConfig {
        host: Some("h".into()),
        path: Some("/p".into()),
        upstream: "u".into(),
        strip_prefix: false,
        access: Access::SignedIn,
        scope: Some(Scope::Base),
        allowed_openids: vec![],
        audience: String::new(),
        allowed_userids: vec![],
        // A number, so that the wrong-kind test knows this list holds numbers.
        allowed_departments: vec![1],
    }];
    c.hub_client = Some(file::HubClientConfig {
        client_secret_file: Some("f".into()),
        ..file::HubClientConfig::default()
    });
    c
}

/// Every `(section, key, default value)`, from the structs themselves.
fn every_key() -> Vec<(String, String, toml::Value)> {
    let value = toml::Value::try_from(every_key_filled()).unwrap();
    let mut out = vec![];
    for (section, table) in value.as_table().unwrap() {
        // An array of tables (`[[routes]]`): its first element's keys, as `routes[0]`.
        let (section, table) = match table.as_array() {
            Some(tables) => (format!("{section}[0]"), &tables[0]),
            None => (section.clone(), table),
        };
        for (key, default) in table.as_table().unwrap() {
            out.push((section.clone(), key.clone(), default.clone()));
        }
    }
    out
}

#[test]
fn every_config_key_is_documented_in_the_readme_reference() {
    let readme = include_str!("../../README.md");
    // A new field without a README row fails here.
    let missing: Vec<String> = every_key()
        .into_iter()
        .map(|(section, key, _)| format!("| `{}.{key}` |", section.replace("[0]", "[]")))
        .filter(|row| !readme.contains(row))
        .collect();
    assert!(
        missing.is_empty(),
        "README's configuration reference lacks: {missing:?}"
    );
}

/// MINIMAL with `section.key = value` set, as TOML text.
fn with_value(section: &str, key: &str, value: toml::Value) -> String {
    let mut doc: toml::Table = toml::from_str(MINIMAL).unwrap();
    let table = match section.strip_suffix("[0]") {
        // One `[[section]]` table holding only this key.
        Some(array) => {
            let tables = doc.entry(array).or_insert_with(|| {
                toml::Value::Array(vec![toml::Value::Table(toml::Table::new())])
            });
            &mut tables.as_array_mut().unwrap()[0]
        }
        None => doc
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new())),
    };
    table.as_table_mut().unwrap().insert(key.into(), value);
    toml::to_string(&doc).unwrap()
}

/// The one problem `text` has: its key and its message.
fn only_problem(text: &str) -> Problem {
    match from_toml(text, Path::new("."), &env(&[])) {
        Err(ConfigError::Invalid(mut p)) if p.len() == 1 => p.remove(0),
        Err(e) => panic!("expected one problem, got: {e}\nin:\n{text}"),
        Ok(_) => panic!("accepted:\n{text}"),
    }
}

/// A value of every TOML kind but `like`'s, and for arrays and tables one whose
/// element is wrong, with the key suffix the problem must then name.
fn wrong_values(like: &toml::Value) -> Vec<(toml::Value, String)> {
    use toml::Value as V;
    let kinds = [
        V::String("\u{1}not-this".into()),
        V::Integer(7),
        V::Boolean(true),
        V::Array(vec![V::Integer(7)]),
        V::Table(toml::Table::from_iter([("k".to_string(), V::Integer(7))])),
    ];
    let mut out: Vec<(V, String)> = kinds
        .into_iter()
        .filter(|v| v.type_str() != like.type_str())
        .map(|v| (v, String::new()))
        .collect();
    match like {
        // A list of numbers (filled in `every_key_filled` to say so): a string in it.
        V::Array(items) if items.first().is_some_and(V::is_integer) => out.push((
            V::Array(vec![V::Integer(7), V::String("ok".into())]),
            "[1]".into(),
        )),
        // Every other list in the config holds strings.
        V::Array(_) => out.push((
            V::Array(vec![V::String("ok".into()), V::Integer(7)]),
            "[1]".into(),
        )),
        // Every map in the config maps names to strings.
        V::Table(_) => out.push((
            V::Table(toml::Table::from_iter([("k".to_string(), V::Integer(7))])),
            ".k".into(),
        )),
        _ => {}
    }
    out
}

#[test]
fn a_value_of_the_wrong_kind_is_refused_naming_its_key_for_every_key() {
    let mut checked = 0;
    for (section, key, default) in every_key() {
        for (wrong, suffix) in wrong_values(&default) {
            let text = with_value(&section, &key, wrong.clone());
            let p = only_problem(&text);
            let want = format!("{section}.{key}{suffix}");
            assert_eq!(p.key, want, "{want} = {wrong}: {p}");
            // A table value is written as its own `[section.key]` table.
            let line = text
                .lines()
                .position(|l| {
                    l.starts_with(&format!("{key} = ")) || l == format!("[{section}.{key}]")
                })
                .map(|i| i + 1);
            if let Some(line) = line {
                // In a table, the error may point at its first key, one line further.
                let next = line + usize::from(wrong.is_table());
                assert!(
                    p.message.starts_with(&format!("line {line}: "))
                        || p.message.starts_with(&format!("line {next}: ")),
                    "{want} = {wrong}: {p}\n{text}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 150, "only {checked} cases");
}

#[test]
fn a_duration_that_is_not_one_is_refused_naming_its_key_for_every_duration_key() {
    let mut durations = 0;
    for (section, key, default) in every_key() {
        let is_duration = default.as_str().is_some_and(|s| parse_duration(s).is_ok());
        if !is_duration {
            continue;
        }
        for wrong in ["soon", "30", "5 minutes", "-1s"] {
            let text = with_value(&section, &key, toml::Value::String(wrong.into()));
            let p = only_problem(&text);
            assert_eq!(p.key, format!("{section}.{key}"), "{wrong:?}: {p}");
            assert!(p.message.contains(wrong), "the value is quoted: {p}");
        }
        durations += 1;
    }
    assert!(durations >= 10, "{durations} duration keys");
}

#[test]
fn an_unknown_key_is_refused_by_its_full_name_in_every_section() {
    let sections: Vec<String> = every_key()
        .into_iter()
        .map(|(section, _, _)| section)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for section in &sections {
        let text = with_value(section, "no_such_key", toml::Value::Integer(1));
        let p = only_problem(&text);
        assert_eq!(p.key, format!("{section}.no_such_key"), "{p}");
        assert!(p.message.contains("unknown field"), "{p}");
    }
    let p = only_problem(&format!("{MINIMAL}\n[no_such_section]\nx = 1\n"));
    assert_eq!(p.key, "no_such_section", "{p}");
}

/// Mistakes people make, each with the key that must be named. Add a row for a new
/// key's typical mistake; `a_value_of_the_wrong_kind...` covers wrong types already.
const MISTAKES: &[(&str, &str, &str)] = &[
    // (section, line to add, key named)
    ("identity", "ttl = \"soon\"", "identity.ttl"),
    ("session", "same_site = \"sideways\"", "session.same_site"),
    ("session", "store = \"disk\"", "session.store"),
    ("session", "secure = \"yes\"", "session.secure"),
    ("server", "workers = \"4\"", "server.workers"),
    ("server", "workers = -1", "server.workers"),
    ("server", "max_body_size = \"lots\"", "server.max_body_size"),
    ("server", "listen = 127.0.0.1:8180", "server.listen"),
    ("server", "listen = \"127.0.0.1\"", "server.listen"),
    (
        "server",
        "trusted_proxies = \"10.0.0.0/8\"",
        "server.trusted_proxies",
    ),
    (
        "access",
        "allowed_openids = \"o123\"",
        "access.allowed_openids",
    ),
    (
        "access",
        "public_paths = [\"/a\", \"static/*\"]",
        "access.public_paths[1]",
    ),
    (
        "wechat",
        "verify_files = [\"MP_verify_abc.txt\"]",
        "wechat.verify_files",
    ),
    (
        "wechat",
        "verify_files = { \"MP_verify_abc.txt\" = 1 }",
        "wechat.verify_files.\"MP_verify_abc.txt\"",
    ),
    ("wechat", "scope = \"snsapi_login\"", "wechat.scope"),
    ("wechat", "lang = \"fr\"", "wechat.lang"),
    ("identity", "algorithm = \"HS512\"", "identity.algorithm"),
    ("identity", "header = \"X Bad\"", "identity.header"),
    ("desktop", "mode = \"popup\"", "desktop.mode"),
    ("upstream", "url = \"127.0.0.1:3000\"", "upstream.url"),
    ("upstream", "timeout = 30", "upstream.timeout"),
    (
        "upstream",
        "preserve_host = \"no\"",
        "upstream.preserve_host",
    ),
    ("admin", "listen = \"localhost\"", "admin.listen"),
];

#[test]
fn each_typical_mistake_is_reported_by_its_key_and_no_other() {
    for (section, line, key) in MISTAKES {
        // Into the section MINIMAL has, or a new one.
        let header = format!("[{section}]\n");
        let text = if MINIMAL.contains(&header) {
            MINIMAL.replace(&header, &format!("{header}{line}\n"))
        } else {
            format!("{MINIMAL}{header}{line}\n")
        };
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{line}: {p:?}");
        assert!(
            p[0].starts_with(&format!("{key}: ")),
            "{line}: want {key}, got {p:?}"
        );
    }
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
fn urls_are_printed_without_their_user_info_and_nothing_else_changes() {
    let table = [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:hunter2@cache:6379/1", "redis://cache:6379/1"),
        ("rediss://user:p@ss@cache:6380", "rediss://cache:6380"),
        ("redis://cache/0?x=a@b", "redis://cache/0?x=a@b"),
        ("not a url", "not a url"),
    ];
    for (url, want) in table {
        assert_eq!(redact_url(url), want, "{url}");
    }
}

#[test]
fn settings_that_together_can_never_sign_anyone_in_are_refused_naming_both_keys() {
    let http = MINIMAL.replace("https://app.example.com", "http://app.example.com");
    let add = |base: &str, section: &str, line: &str| {
        base.replace(&format!("[{section}]\n"), &format!("[{section}]\n{line}\n"))
    };
    let with_session = |base: &str, line: &str| format!("{base}[session]\n{line}\n");
    // (the file, the key named first, the other key the line must name)
    let table: Vec<(String, &str, &str)> = vec![
        (
            with_session(&http, "secure = true"),
            "session.secure",
            "server.public_url",
        ),
        (
            with_session(&http, "same_site = \"none\""),
            "session.same_site",
            "server.public_url",
        ),
        (
            with_session(MINIMAL, "same_site = \"none\"\nsecure = false"),
            "session.same_site",
            "session.secure",
        ),
        (
            with_session(&http, "cookie_name = \"__Host-wxgate\""),
            "session.cookie_name",
            "server.public_url",
        ),
        (
            MINIMAL.replace("https://app.example.com", "http://0.0.0.0:8080"),
            "server.public_url",
            "server.listen",
        ),
        (
            add(MINIMAL, "server", "listen = \"0.0.0.0:3000\""),
            "upstream.url",
            "server.listen",
        ),
        (
            add(
                &MINIMAL.replace("http://127.0.0.1:3000", "http://localhost:8080"),
                "server",
                "listen = \"127.0.0.1:8080\"",
            ),
            "upstream.url",
            "server.listen",
        ),
    ];
    for (text, key, other) in &table {
        let p = problems(text);
        assert_eq!(p.len(), 1, "{text}\n{p:?}");
        assert!(p[0].starts_with(&format!("{key}: ")), "{p:?}");
        assert!(p[0].contains(other), "names {other}: {p:?}");
    }
    // The same settings where they can work are accepted.
    for text in [
        with_session(
            MINIMAL,
            "secure = true\nsame_site = \"none\"\ncookie_name = \"__Host-wxgate\"",
        ),
        with_session(&http, "secure = false"),
        add(MINIMAL, "server", "listen = \"0.0.0.0:8080\""),
        add(MINIMAL, "server", "listen = \"127.0.0.1:0\""),
    ] {
        assert!(problems(&text).is_empty(), "{text}\n{:?}", problems(&text));
    }
}

#[test]
fn a_short_session_secret_is_blamed_on_where_it_came_from() {
    let redis = format!("{MINIMAL}[session]\nstore = \"redis\"\nsecret = \"short\"\n");
    let p = problems(&redis);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("session.secret: "), "{p:?}");

    let env_too = match from_toml(
        &redis,
        Path::new("."),
        &env(&[("WXGATE_SESSION_SECRET", "tiny")]),
    ) {
        Err(e) => e.problems(),
        Ok(_) => panic!("a 4-byte secret accepted"),
    };
    assert_eq!(env_too.len(), 1, "{env_too:?}");
    assert!(
        env_too[0].starts_with("WXGATE_SESSION_SECRET: "),
        "{env_too:?}"
    );
    assert!(env_too[0].contains("got 4"), "{env_too:?}");
}

#[test]
fn an_account_section_defaults_to_stable_tokens_for_the_public_host() {
    let c = from_toml(MINIMAL, Path::new("."), &env(&[])).unwrap();
    assert!(c.account.is_none(), "no [account]: no account services");
    let text = format!("{MINIMAL}[account]\n");
    let c = from_toml(&text, Path::new("."), &env(&[])).unwrap();
    let a = c.account.unwrap();
    assert_eq!(a.token, TokenMode::Stable);
    assert_eq!(a.jssdk_hosts, ["app.example.com"]);
    assert_eq!(a.refresh_ahead.get().as_secs(), 300);
    assert_eq!(a.subscribe_ttl.get().as_secs(), 600);
    assert!(!a.subscribe_claim);
    assert_eq!(
        a.token_endpoint_secret, "",
        "no bearer: the endpoint is off"
    );
}

#[test]
fn account_problems_name_their_key() {
    let cases = [
        (
            "token_endpoint_secret = \"short\"",
            "account.token_endpoint_secret",
        ),
        (
            "token_endpoint_secret_file = \"missing.txt\"",
            "account.token_endpoint_secret_file",
        ),
        ("refresh_ahead = \"10m\"", "account.refresh_ahead"),
        ("refresh_ahead = \"0s\"", "account.refresh_ahead"),
        (
            "jssdk_hosts = [\"https://app.example.com/\"]",
            "account.jssdk_hosts[0]",
        ),
        (
            "jssdk_hosts = [\"ok.example.com\", \"a b\"]",
            "account.jssdk_hosts[1]",
        ),
        (
            "token = \"off\"\nsubscribe_claim = true",
            "account.subscribe_claim",
        ),
        ("subscribe_ttl = \"0s\"", "account.subscribe_ttl"),
        ("bogus = 1", "account.bogus"),
    ];
    for (line, key) in cases {
        let p = problems(&format!("{MINIMAL}[account]\n{line}\n"));
        assert_eq!(p.len(), 1, "{line}: {p:?}");
        assert!(p[0].starts_with(key), "{line}: {p:?}");
    }
}

#[test]
fn the_token_endpoint_secret_comes_from_env_first_and_never_shows_in_debug_output() {
    let secret = "x".repeat(40);
    let text = format!("{MINIMAL}[account]\ntoken_endpoint_secret = \"{secret}\"\njssdk_hosts = [\"*.Example.com\"]\n");
    let c = from_toml(&text, Path::new("."), &env(&[])).unwrap();
    let a = c.account.as_ref().unwrap();
    assert_eq!(a.token_endpoint_secret, secret);
    assert_eq!(a.jssdk_hosts, ["*.example.com"]);
    assert!(
        !format!("{c:?}").contains(&secret),
        "Debug shows the bearer"
    );
    let from_env = "e".repeat(32);
    let c = from_toml(
        &text,
        Path::new("."),
        &env(&[("WXGATE_TOKEN_ENDPOINT_SECRET", &from_env)]),
    )
    .unwrap();
    assert_eq!(c.account.unwrap().token_endpoint_secret, from_env);
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

#[test]
fn hub_problems_name_their_key() {
    let text = format!(
        r#"{MINIMAL}
[[hub.clients]]
client_id = "crm app"
client_secret = "short"
redirect_uris = ["https://crm.example.com/cb#x", "http://crm.example.com/cb", "https://crm.example.com/cb"]
[[hub.clients]]
client_id = "wiki"
client_secret_file = "no-such-file"
redirect_uris = []
scope = "snsapi_userinfo"
"#
    );
    let keys: Vec<String> = problems(&text)
        .iter()
        .map(|p| p.split(": ").next().unwrap().to_string())
        .collect();
    assert_eq!(
        keys,
        [
            "hub.clients[0].client_id",
            "hub.clients[0].client_secret",
            "hub.clients[0].redirect_uris[0]",
            "hub.clients[0].redirect_uris[1]",
            "hub.clients[1].client_secret_file",
            "hub.clients[1].redirect_uris",
        ]
    );
    let p = only_problem(&format!("{MINIMAL}\n[hub]\n"));
    assert_eq!(p.key, "hub.clients", "{p}");
    let p = only_problem(&format!(
        "{MINIMAL}\n[[hub.clients]]\nclient_id = \"crm\"\nclient_secret = \"{}\"\nredirect_uris = [\"https://crm.example.com/cb\"]\nscope = \"snsapi_login\"\n",
        "s".repeat(32)
    ));
    assert_eq!(p.key, "hub.clients[0].scope", "{p}");
}

#[test]
fn a_hub_signs_with_a_published_key_and_takes_client_secrets_from_env_first() {
    let client = |secret: &str| {
        format!(
            "[[hub.clients]]\nclient_id = \"my-crm\"\nclient_secret = \"{secret}\"\nredirect_uris = [\"https://crm.example.com/cb\"]\n"
        )
    };
    let hs256 = MINIMAL.replace("[wechat]", "[identity]\nalgorithm = \"HS256\"\nsigning_key = \"0123456789abcdef0123456789abcdef\"\n[wechat]");
    let p = only_problem(&format!("{hs256}{}", client(&"s".repeat(32))));
    assert_eq!(p.key, "identity.algorithm", "{p}");

    let text = format!("{MINIMAL}{}", client("too-short"));
    let from_env = "e".repeat(40);
    let c = from_toml(
        &text,
        Path::new("."),
        &env(&[("WXGATE_HUB_SECRET_MY_CRM", &from_env)]),
    )
    .unwrap();
    let hub = c.hub.unwrap();
    assert_eq!(hub.clients[0].client_secret, from_env);
    assert_eq!(hub.code_ttl, CODE_TTL);
    assert!(
        !format!("{:?}", hub.clients[0]).contains(&from_env),
        "never printed"
    );
}

#[test]
fn a_hub_client_needs_no_wechat_section_and_names_its_own_problems() {
    let head = "[server]\npublic_url = \"https://crm.example.com\"\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n";
    let ok = format!(
        "{head}[hub_client]\nissuer = \"https://auth.example.com/_wxgate/\"\nclient_id = \"crm\"\nclient_secret = \"s3cret\"\n"
    );
    let c = from_toml(&ok, Path::new("."), &env(&[])).unwrap();
    let hc = c.hub_client.unwrap();
    assert_eq!(
        hc.issuer, "https://auth.example.com/_wxgate",
        "trailing / dropped"
    );
    assert_eq!(hc.scope, Scope::Base);
    assert!(!format!("{hc:?}").contains("s3cret"));

    let from_env = from_toml(
        &ok.replace("client_secret = \"s3cret\"\n", ""),
        Path::new("."),
        &env(&[("WXGATE_HUB_CLIENT_SECRET", "from-env")]),
    )
    .unwrap();
    assert_eq!(from_env.hub_client.unwrap().client_secret, "from-env");

    let bad = format!(
        "{head}[hub_client]\nissuer = \"http://auth.example.com/_wxgate?x=1\"\nclient_id = \"c r m\"\n"
    );
    let keys: Vec<String> = problems(&bad)
        .iter()
        .map(|p| p.split(": ").next().unwrap().to_string())
        .collect();
    assert_eq!(
        keys,
        [
            "hub_client.issuer",
            "hub_client.client_id",
            "hub_client.client_secret"
        ]
    );
    // Without [hub_client], [wechat] is as required as ever.
    let p = problems(head);
    assert!(p.iter().any(|p| p.starts_with("wechat.appid")), "{p:?}");
    // A hub that is a hub client, or a hub client holding the account's token: no.
    let both = format!(
        "{ok}[[hub.clients]]\nclient_id = \"x\"\nclient_secret = \"{}\"\nredirect_uris = [\"https://x.example.com/cb\"]\n",
        "s".repeat(32)
    );
    assert_eq!(only_problem(&both).key, "hub_client");
    assert_eq!(only_problem(&format!("{ok}[account]\n")).key, "account");
}
