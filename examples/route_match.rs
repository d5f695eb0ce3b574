//! How long choosing a route takes, with 1 route and with 50 (hosts and paths mixed),
//! for requests that match the last route, the first, and none.
//!
//!   cargo run --release --example route_match
//!
//! The index should make 50 routes cost about what one does; the list scan beside it
//! shows what a scan would cost.

// A benchmark with a broken route table has nothing to measure: stopping is right.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use wxgate::config::Access;
use wxgate::routes::{HostPattern, PathPattern, Route, RouteTable};

fn route(index: usize, host: Option<&str>, path: Option<&str>) -> Route {
    Route {
        index,
        host: host.map(|h| HostPattern::parse(h).expect("host")),
        path: path.map(|p| PathPattern::parse(p).expect("path")),
        upstream: http::Uri::from_static("http://127.0.0.1:3000"),
        upstream_url: "http://127.0.0.1:3000".into(),
        strip_prefix: false,
        access: Access::SignedIn,
        scope: None,
        allowed: None,
        audience: String::new(),
        allowed_userids: vec![],
        allowed_departments: vec![],
    }
}

/// 50 routes as a large site might have: apps by host, by wildcard, and by path.
fn fifty() -> RouteTable {
    let mut routes = Vec::new();
    for i in 0..20 {
        routes.push(route(
            routes.len(),
            Some(&format!("app{i}.example.com")),
            None,
        ));
    }
    for i in 0..10 {
        routes.push(route(
            routes.len(),
            Some(&format!("*.tenant{i}.example.com")),
            Some("/api/*"),
        ));
    }
    for i in 0..19 {
        routes.push(route(routes.len(), None, Some(&format!("/svc{i}/*"))));
    }
    routes.push(route(
        routes.len(),
        Some("shop.example.com"),
        Some("/cart/*"),
    ));
    RouteTable::new(routes)
}

fn ns_per_select(t: &RouteTable, host: &str, path: &str, scan: bool) -> f64 {
    let rounds = 2_000_000u32;
    let start = Instant::now();
    for _ in 0..rounds {
        let r = if scan {
            t.scan(black_box(Some(host)), black_box(path))
        } else {
            t.select(black_box(Some(host)), black_box(path))
        };
        black_box(r);
    }
    start.elapsed().as_nanos() as f64 / f64::from(rounds)
}

fn main() {
    let one = RouteTable::new(vec![route(0, None, Some("/svc0/*"))]);
    let fifty = fifty();
    let cases = [
        ("last route", "shop.example.com", "/cart/items/42"),
        ("a wildcard", "a.b.tenant7.example.com", "/api/v1/orders"),
        ("first route", "app0.example.com", "/x/y"),
        ("no route", "www.example.com", "/about/team/contact"),
    ];
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>8}",
        "request", "1 route", "50 routes", "50 (scan)", "delta"
    );
    let mut worst: f64 = 0.0;
    for (name, host, path) in cases {
        // Best of three: a shared machine's noise only ever adds.
        let best = |t: &RouteTable, scan| {
            (0..3)
                .map(|_| ns_per_select(t, host, path, scan))
                .fold(f64::INFINITY, f64::min)
        };
        let (a, b, c) = (best(&one, false), best(&fifty, false), best(&fifty, true));
        worst = worst.max(b - a);
        println!(
            "{name:<12} {a:>8.1}ns {b:>8.1}ns {c:>8.1}ns {:>6.1}ns",
            b - a
        );
    }
    println!("most added by 50 routes over 1: {worst:.1} ns per request");
}
