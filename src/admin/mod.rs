//! The admin listener: `/healthz`, `/readyz`, `/metrics`, never on the public port.

pub mod metrics;
