//! The integration tests, one binary: each module is a group of user stories about
//! wxgate from the outside (its listeners, its command line, the programs around it);
//! `support` is what they share, with [`support::proxy`] the one way to start a
//! wxgate in process.
//!
//! One binary rather than one per file: the shared code and the crate are linked once,
//! and everything in `support` is used somewhere or the build says so.

// A test that cannot go on says so by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod access_log;
mod account;
mod browser;
mod caddy;
mod cli;
mod demo;
mod deploy_kit;
mod desktop;
mod faults;
mod fuzz_smoke;
mod h1_hostile;
mod head_guard_differential;
mod head_guard_e2e;
mod hostile_input;
mod hub;
mod identity;
mod limits;
mod nginx;
mod observability;
mod proxy;
mod real_upstreams;
mod redis_store;
mod reload;
mod replicas;
mod routes;
mod session_stores;
mod signin;
mod tls;
mod verify_examples;
mod wechat_mock;
mod wecom;
