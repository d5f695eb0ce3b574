//! wxgate: an authentication reverse proxy that signs visitors in with WeChat web
//! authorization and forwards each request with a signed identity header.
//!
//! A request goes through phases (see [`app::handle`] for the chart): its context is
//! read once, then own URL? → route → gate → rewrite → forward → respond. Each concern
//! lives in its own module, and no module uses one that uses it back: `app` on top,
//! then `signin` (its methods above its machinery), `proxy` and `server`, and below
//! them `session`, `identity`, `wechat`, `pages`, `config`, `metrics`, `workers`.

// unwrap/expect are refused by Cargo.toml's [lints]; unit tests may use them.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod account;
pub mod admin;
pub mod app;
pub use app::{run, run_with_reload, Listeners};
pub mod config;
pub mod hub;
pub mod hub_client;
pub mod identity;
pub mod metrics;
pub mod mock;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod session;
pub mod signin;
pub mod wechat;
pub mod wecom;
pub mod workers;

pub mod body;
pub mod cli;
pub mod decimal;
pub mod demo;
pub mod pages;
pub mod query;
pub mod random;
