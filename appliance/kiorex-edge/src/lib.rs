//! The DMZ edge (`kiorex serve edge`) and the mutual-TLS internal listener that `core` opens for
//! it.
//!
//! The edge is the only thing the internet touches. It terminates TLS (rustls; TLS 1.3, and
//! TLS 1.2 with AEAD suites only when configured), answers its own health endpoints, refuses
//! every route that is not on the allow-list with the same 404, checks the partner's token scope,
//! applies rate, connection, size and time limits, and forwards what is left to `core`'s internal
//! listener over mutual TLS. It holds no database, directory or object-store credentials: its only
//! secrets are its own TLS key and its client key for core, and it verifies tokens with core's
//! public key.
//!
//! Crates, and why:
//! - `rustls` with the `ring` provider: memory-safe TLS, no OpenSSL, no CBC or RC4 suites exist
//!   in it at all, so "AEAD only" holds by construction; `ring` builds without cmake.
//! - `tokio-rustls` and `hyper` 1 (`http1` server with `header_read_timeout` and `max_buf_size`)
//!   give the connection-level controls a slowloris defence needs, which `axum::serve` hides.
//! - `hyper-rustls` + `hyper-util`'s pooled client keep the mTLS connections to core alive.
//! - `governor` (GCRA, keyed by source address and by client id) for rate limits with an exact
//!   `Retry-After`.
//! - `jsonwebtoken`, the same crate core signs with, to verify EdDSA tokens.

pub mod internal;
pub mod limits;
pub mod metrics;
pub mod ocsp;
pub mod problem;
pub mod proxy;
pub mod routes;
pub mod scope;
pub mod server;
pub mod settings;
pub mod tls;
pub mod token;

pub use settings::{EdgeSettings, InternalSettings, Limits, Route, RouteAuth};
