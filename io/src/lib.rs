//! acemux: the I/O driver around [`acemux_core`].
//!
//! A thin, bounded pump: sockets through [`net::Net`], time through `tokio::time`,
//! protocol decisions in the core. The same code runs over real sockets
//! ([`net::TokioNet`]) and over a simulated network.

pub mod app;
pub mod cli;
pub mod clock;
pub mod demo;
pub mod emulator;
pub mod engine;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod net;
pub mod proxy;
pub mod relay;
pub mod server;
pub mod server_io;
pub mod store;
pub mod webhook;

pub use app::{start, Running, ServeOptions, StartError};
