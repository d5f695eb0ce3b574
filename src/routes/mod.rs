//! Several apps behind one wxgate: `[[routes]]` choose, by host and path, the upstream a
//! request goes to and what it asks of the visitor (access, scope, allowlist, audience).
//!
//! This module owns the table as pure code: reading and checking the routes (every
//! problem names `routes[N].key`), and selecting the route for a request
//! ([`RouteTable::select`], first match wins, `None` = `[upstream]`). The request path
//! uses the selected [`Route`]; nothing here does I/O.

pub mod host;
pub mod path;
mod table;

pub use host::{normalize_request_host, HostPattern};
pub use path::PathPattern;
pub use table::RouteTable;

use std::collections::HashSet;

use http::Uri;

use crate::config::{origin_of, parse_http_url, Access, Config, Problem, RouteConfig, Scope};
use crate::identity::Audience;
use crate::signin::RouteNeeds;

/// One route, compiled.
#[derive(Debug, Clone)]
pub struct Route {
    /// Its place in the file (`routes[index]`).
    pub index: usize,
    pub host: Option<HostPattern>,
    pub path: Option<PathPattern>,
    pub upstream: Uri,
    /// The upstream as written, for logs and metrics.
    pub upstream_url: String,
    pub strip_prefix: bool,
    pub access: Access,
    pub scope: Option<Scope>,
    /// `Some`: only these openids here; `None`: `access.allowed_openids` applies.
    pub allowed: Option<HashSet<String>>,
    /// The identity token's `aud` on this route.
    pub audience: String,
    /// For WeCom sessions: these members, or members of these departments (both
    /// empty: every member `[wecom]` admits).
    pub allowed_userids: Vec<String>,
    pub allowed_departments: Vec<u64>,
}

impl Route {
    /// The path the upstream gets for a normalised request path this route matched.
    pub fn upstream_path(&self, normalized: &str) -> Option<String> {
        match (&self.path, self.strip_prefix) {
            (Some(p), true) => Some(p.strip(normalized)),
            _ => None,
        }
    }

    /// Its place and patterns, for messages: `routes[1] (host crm.example.com, path /crm/*)`.
    pub fn describe(&self) -> String {
        describe(self.index, self.host.as_ref(), self.path.as_ref())
    }

    #[cfg(test)]
    pub(crate) fn for_test(host: Option<HostPattern>, path: Option<PathPattern>) -> Route {
        Route {
            index: 0,
            host,
            path,
            upstream: Uri::from_static("http://127.0.0.1:1"),
            upstream_url: "http://127.0.0.1:1".into(),
            strip_prefix: false,
            access: Access::SignedIn,
            scope: None,
            allowed: None,
            audience: String::new(),
            allowed_userids: vec![],
            allowed_departments: vec![],
        }
    }
}

fn describe(index: usize, host: Option<&HostPattern>, path: Option<&PathPattern>) -> String {
    let host = host.map_or_else(|| "any host".to_string(), |h| format!("host {h}"));
    let path = path.map_or_else(|| "any path".to_string(), |p| format!("path {p}"));
    format!("routes[{index}] ({host}, {path})")
}

/// What the sign-in needs to know of a request's route (`None`: `[upstream]`).
pub fn needs<'a>(route: Option<&'a Route>, cfg: &Config) -> RouteNeeds<'a> {
    let default = RouteNeeds::of(cfg);
    let Some(r) = route else {
        return default;
    };
    RouteNeeds {
        scope: r.scope.unwrap_or(default.scope),
        requires: r.scope,
        access: r.access,
        allowed: r.allowed.as_ref(),
        audience: Some(Audience {
            slot: r.index as u32,
            name: &r.audience,
        }),
        allowed_userids: &r.allowed_userids,
        allowed_departments: &r.allowed_departments,
    }
}

/// Every problem in `[[routes]]` and `server.extra_hosts`, each naming its key.
/// `public_host`: `server.public_url`'s host, when it is valid.
pub fn check(
    routes: &[RouteConfig],
    extra_hosts: &[String],
    public_host: Option<&str>,
) -> Vec<Problem> {
    compile(routes, extra_hosts, public_host).1
}

/// The table for a checked config; `Err` carries the problems of one that was not.
pub fn build(cfg: &Config) -> Result<RouteTable, Vec<Problem>> {
    let (routes, problems) = compile(
        &cfg.routes,
        &cfg.server.extra_hosts,
        Some(&cfg.server.public.host),
    );
    if problems.is_empty() {
        Ok(RouteTable::new(routes))
    } else {
        Err(problems)
    }
}

fn compile(
    configured: &[RouteConfig],
    extra_hosts: &[String],
    public_host: Option<&str>,
) -> (Vec<Route>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut push = |key: String, message: String| problems.push(Problem { key, message });

    let mut extra = Vec::new();
    for (i, h) in extra_hosts.iter().enumerate() {
        match HostPattern::parse(h) {
            Ok(p) => extra.push(p),
            Err(m) => push(format!("server.extra_hosts[{i}]"), m),
        }
    }
    let mut routes = Vec::with_capacity(configured.len());
    for (i, rc) in configured.iter().enumerate() {
        let key = |k: &str| format!("routes[{i}].{k}");
        let mut ok = true;
        let host = match rc.host.as_deref().map(HostPattern::parse) {
            None => None,
            Some(Ok(h)) => {
                let served = match &h {
                    HostPattern::Exact(name) => {
                        public_host == Some(name.as_str()) || extra.iter().any(|e| e.matches(name))
                    }
                    HostPattern::Under(_) => extra.iter().any(|e| e.covers(&h)),
                };
                if !served {
                    push(key("host"), format!(
                        "{h} is neither server.public_url's host ({}) nor in server.extra_hosts: add it there if wxgate serves it",
                        public_host.unwrap_or("none")
                    ));
                    ok = false;
                }
                Some(h)
            }
            Some(Err(m)) => {
                push(key("host"), m);
                ok = false;
                None
            }
        };
        let path = match rc.path.as_deref().map(PathPattern::parse) {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(m)) => {
                push(key("path"), m);
                ok = false;
                None
            }
        };
        let upstream = match parse_http_url(&rc.upstream) {
            Ok(u) if u.query().is_some() => {
                push(
                    key("upstream"),
                    format!("{:?} must not have a query", rc.upstream),
                );
                ok = false;
                u
            }
            Ok(u) => u,
            Err(m) => {
                push(key("upstream"), m);
                ok = false;
                Uri::default()
            }
        };
        if rc.strip_prefix && !matches!(path, Some(PathPattern::Prefix(ref p)) if !p.is_empty()) {
            push(
                key("strip_prefix"),
                "needs a path prefix like \"/crm/*\" to strip".into(),
            );
            ok = false;
        }
        for (j, id) in rc.allowed_openids.iter().enumerate() {
            if id.trim().is_empty() || id.trim() != id {
                push(
                    format!("routes[{i}].allowed_openids[{j}]"),
                    format!("{id:?} is not an openid"),
                );
                ok = false;
            }
        }
        for (j, id) in rc.allowed_userids.iter().enumerate() {
            if id.trim().is_empty() || id.trim() != id {
                push(
                    format!("routes[{i}].allowed_userids[{j}]"),
                    format!("{id:?} is not a WeCom userid"),
                );
                ok = false;
            }
        }
        if !ok {
            continue;
        }
        // A route after one that matches everything it would can never be chosen:
        // almost always a mistake in the order.
        if let Some(earlier) = routes.iter().find(|r: &&Route| {
            r.host
                .as_ref()
                .is_none_or(|a| host.as_ref().is_some_and(|b| a.covers(b)))
                && r.path
                    .as_ref()
                    .is_none_or(|a| path.as_ref().is_some_and(|b| a.covers(b)))
        }) {
            push(
                format!("routes[{i}]"),
                format!(
                    "can never match: {} comes first and matches every request it would (put the narrower route first)",
                    earlier.describe()
                ),
            );
            continue;
        }
        let audience = if rc.audience.is_empty() {
            origin_of(&upstream)
        } else {
            rc.audience.clone()
        };
        routes.push(Route {
            index: i,
            host,
            path,
            upstream_url: rc.upstream.clone(),
            upstream,
            strip_prefix: rc.strip_prefix,
            access: rc.access,
            scope: rc.scope,
            allowed: (!rc.allowed_openids.is_empty())
                .then(|| rc.allowed_openids.iter().cloned().collect()),
            audience,
            allowed_userids: rc.allowed_userids.clone(),
            allowed_departments: rc.allowed_departments.clone(),
        });
    }
    (routes, problems)
}

#[cfg(test)]
mod tests;
