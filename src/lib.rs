//! wxgate: an authentication reverse proxy that signs visitors in with WeChat web
//! authorization and forwards each request with a signed identity header.
//!
//! The request path has the same shape as a pingora proxy: classify → authenticate →
//! rewrite → forward → respond. Each concern lives in its own module.

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
pub mod mock;
pub mod proxy;
pub mod server;
pub mod session;
pub mod signin;
pub mod wechat;

pub mod body;
pub mod cli;
pub mod decimal;
pub mod demo;
pub mod pages;
pub mod query;
pub mod random;
