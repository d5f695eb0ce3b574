//! The routes a config file can and cannot have, read through the config loader as
//! `wxgate check` reads them.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::{from_toml, Access, Config, Scope};

const BASE: &str = r#"
[server]
public_url = "https://app.example.com"
extra_hosts = ["crm.example.com", "*.shop.example.com"]
[upstream]
url = "http://127.0.0.1:3000"
[wechat]
appid = "wx0000000000000000"
secret = "s3cret"
"#;

fn load(routes: &str) -> Result<Config, Vec<String>> {
    from_toml(&format!("{BASE}{routes}"), Path::new("."), &BTreeMap::new())
        .map_err(|e| e.problems())
}

fn problems(routes: &str) -> Vec<String> {
    load(routes).err().unwrap_or_default()
}

#[test]
fn a_two_app_setup_loads_with_its_defaults() {
    let c = load(
        r#"
[[routes]]
host = "crm.example.com"
upstream = "http://127.0.0.1:4000"
scope = "snsapi_userinfo"
allowed_openids = ["o-alice"]

[[routes]]
path = "/blog/*"
upstream = "http://127.0.0.1:5000/"
strip_prefix = true
access = "public"
audience = "blog"
"#,
    )
    .unwrap();
    let t = super::build(&c).unwrap();
    let crm = &t.routes()[0];
    assert_eq!(crm.access, Access::SignedIn);
    assert_eq!(crm.scope, Some(Scope::UserInfo));
    assert_eq!(crm.audience, "http://127.0.0.1:4000");
    assert!(crm.allowed.as_ref().unwrap().contains("o-alice"));
    let blog = &t.routes()[1];
    assert_eq!(blog.access, Access::Public);
    assert_eq!(blog.audience, "blog");
    assert_eq!(blog.allowed, None);
    assert_eq!(
        blog.upstream_path("/blog/2024/x").as_deref(),
        Some("/2024/x")
    );
    assert_eq!(crm.upstream_path("/x"), None);
}

#[test]
fn unknown_keys_and_bad_values_name_the_route() {
    let cases: &[(&str, &str)] = &[
        (
            "[[routes]]\nupstream = \"http://a:1\"\nhosts = \"x\"\n",
            "routes[0].hosts",
        ),
        ("[[routes]]\npath = \"/a/*\"\n", "routes[0].upstream"),
        (
            "[[routes]]\nupstream = \"http://a:1\"\naccess = \"open\"\n",
            "routes[0].access",
        ),
        (
            "[[routes]]\nupstream = \"http://a:1\"\nscope = \"all\"\n",
            "routes[0].scope",
        ),
        ("[[routes]]\nupstream = \"ftp://a\"\n", "routes[0].upstream"),
        (
            "[[routes]]\nupstream = \"http://a:1/?x=1\"\n",
            "routes[0].upstream",
        ),
        (
            "[[routes]]\nupstream = \"http://a:1\"\npath = \"/a/*/b\"\n",
            "routes[0].path",
        ),
        (
            "[[routes]]\nupstream = \"http://a:1\"\npath = \"/_wxgate/*\"\n",
            "routes[0].path",
        ),
        (
            "[[routes]]\nupstream = \"http://a:1\"\nhost = \"*.com\"\n",
            "routes[0].host",
        ),
        (
            "[[routes]]\nupstream = \"http://a:1\"\nhost = \"crm.example.com:443\"\n",
            "routes[0].host",
        ),
        (
            "[[routes]]\nupstream = \"http://a:1\"\nstrip_prefix = true\n",
            "routes[0].strip_prefix",
        ),
        (
            "[[routes]]\nupstream = \"http://a:1\"\npath = \"/a\"\nstrip_prefix = true\n",
            "routes[0].strip_prefix",
        ),
        (
            "[[routes]]\nupstream = \"http://a:1\"\nallowed_openids = [\"\"]\n",
            "routes[0].allowed_openids[0]",
        ),
        (
            "[[routes]]\nupstream = \"http://a:1\"\nallowed_userid = [\"zhangsan\"]\n",
            "routes[0].allowed_userid",
        ),
        (
            "[[routes]]\nupstream = \"http://a:1\"\nallowed_departments = [\"hr\"]\n",
            "routes[0].allowed_departments[0]",
        ),
        // WeCom's lists on a WeChat site would match nobody.
        (
            "[[routes]]\nupstream = \"http://a:1\"\nallowed_userids = [\"zhangsan\"]\n",
            "routes[0].allowed_userids",
        ),
        (
            "[[routes]]\nupstream = \"http://a:1\"\nallowed_departments = [3]\n",
            "routes[0].allowed_departments",
        ),
    ];
    for (text, key) in cases {
        let p = problems(text);
        assert_eq!(p.len(), 1, "{text}: {p:?}");
        assert!(p[0].starts_with(&format!("{key}:")), "{text}: {p:?}");
    }
}

#[test]
fn hosts_wxgate_does_not_serve_are_refused() {
    let ok = [
        "app.example.com",
        "crm.example.com",
        "a.shop.example.com",
        "*.shop.example.com",
        "*.eu.shop.example.com",
    ];
    for h in ok {
        let text = format!("[[routes]]\nhost = \"{h}\"\nupstream = \"http://a:1\"\n");
        assert_eq!(problems(&text), Vec::<String>::new(), "{h}");
    }
    for h in [
        "erp.example.com",
        "*.example.com",
        "shop.example.com",
        "evilshop.example.com",
    ] {
        let text = format!("[[routes]]\nhost = \"{h}\"\nupstream = \"http://a:1\"\n");
        let p = problems(&text);
        assert!(
            p.len() == 1
                && p[0].starts_with("routes[0].host:")
                && p[0].contains("server.extra_hosts"),
            "{h}: {p:?}"
        );
    }
}

#[test]
fn extra_hosts_must_be_host_names() {
    let text = BASE.replace(
        "extra_hosts = [\"crm.example.com\", \"*.shop.example.com\"]",
        "extra_hosts = [\"crm.example.com\", \"https://x.example.com\"]",
    );
    let p = from_toml(&text, Path::new("."), &BTreeMap::new())
        .err()
        .map(|e| e.problems())
        .unwrap_or_default();
    assert!(
        p.len() == 1 && p[0].starts_with("server.extra_hosts[1]:"),
        "{p:?}"
    );
}

#[test]
fn a_route_shadowed_by_an_earlier_one_is_named() {
    let shadowed: &[(&str, &str)] = &[
        ("path = \"/crm/*\"", "path = \"/crm/admin/*\""),
        ("path = \"/crm/*\"", "path = \"/crm\""),
        ("", "host = \"crm.example.com\""),
        (
            "host = \"*.shop.example.com\"",
            "host = \"a.shop.example.com\"\npath = \"/x\"",
        ),
        ("path = \"/a\"", "path = \"/a\""),
        (
            "host = \"crm.example.com\"",
            "host = \"crm.example.com\"\npath = \"/x/*\"",
        ),
    ];
    for (first, second) in shadowed {
        let text = format!(
            "[[routes]]\n{first}\nupstream = \"http://a:1\"\n[[routes]]\n{second}\nupstream = \"http://b:1\"\n"
        );
        let p = problems(&text);
        assert!(
            p.len() == 1 && p[0].starts_with("routes[1]: can never match: routes[0]"),
            "{text}: {p:?}"
        );
    }
    let reachable: &[(&str, &str)] = &[
        ("path = \"/crm/admin/*\"", "path = \"/crm/*\""),
        ("path = \"/crm\"", "path = \"/crm/*\""),
        ("host = \"crm.example.com\"", "path = \"/x/*\""),
        (
            "host = \"a.shop.example.com\"",
            "host = \"*.shop.example.com\"",
        ),
        ("path = \"/crm/*\"", "path = \"/crmx/*\""),
        ("path = \"/a\"", "path = \"/a/\""),
    ];
    for (first, second) in reachable {
        let text = format!(
            "[[routes]]\n{first}\nupstream = \"http://a:1\"\n[[routes]]\n{second}\nupstream = \"http://b:1\"\n"
        );
        assert_eq!(problems(&text), Vec::<String>::new(), "{text}");
    }
}

#[test]
fn identity_subject_is_openid_or_unionid() {
    let c = load("").unwrap();
    assert_eq!(c.identity.subject, crate::config::Subject::Openid);
    let c = from_toml(
        &format!("{BASE}[identity]\nsubject = \"unionid\"\n"),
        Path::new("."),
        &BTreeMap::new(),
    )
    .unwrap();
    assert_eq!(c.identity.subject, crate::config::Subject::Unionid);
    let p = from_toml(
        &format!("{BASE}[identity]\nsubject = \"email\"\n"),
        Path::new("."),
        &BTreeMap::new(),
    )
    .err()
    .unwrap()
    .problems();
    assert!(p[0].starts_with("identity.subject"), "{p:?}");
}

/// `BASE` signing in with WeCom instead of WeChat.
fn load_wecom(routes: &str) -> Result<Config, Vec<String>> {
    let base = BASE.replace(
        "[wechat]\nappid = \"wx0000000000000000\"\nsecret = \"s3cret\"\n",
        "[wecom]\ncorp_id = \"ww0000000000000000\"\nagent_id = \"1000002\"\nsecret = \"s3cret\"\n",
    );
    from_toml(&format!("{base}{routes}"), Path::new("."), &BTreeMap::new())
        .map_err(|e| e.problems())
}

#[test]
fn with_wecom_a_route_names_its_members_and_departments() {
    let c = load_wecom(
        r#"
[[routes]]
path = "/hr/*"
upstream = "http://127.0.0.1:4000"
allowed_userids = ["zhangsan"]
allowed_departments = [3, 7]
"#,
    )
    .unwrap();
    let t = super::build(&c).unwrap();
    let hr = &t.routes()[0];
    assert_eq!(hr.allowed_userids, ["zhangsan"]);
    assert_eq!(hr.allowed_departments, [3, 7]);
    let needs = super::needs(Some(hr), &c);
    assert_eq!(needs.allowed_userids, ["zhangsan"]);
    assert_eq!(needs.allowed_departments, [3, 7]);

    let p = load_wecom(
        "[[routes]]\nupstream = \"http://a:1\"\nallowed_userids = [\"zhangsan\", \" lisi\"]\n",
    )
    .unwrap_err();
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("routes[0].allowed_userids[1]:"), "{p:?}");
}
