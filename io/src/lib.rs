//! acemux: the I/O driver around [`acemux_core`].
//!
//! A thin, bounded pump: sockets through [`net::Net`], time through `tokio::time`,
//! protocol decisions in the core. The same code runs over real sockets
//! ([`net::TokioNet`]) and over a simulated network. The engine emulator and the fault
//! relay, test equipment that ships with the binary, are the `acemux-testkit` crate.

pub mod app;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod discovery;
pub mod engine;
pub mod fd_limit;
pub mod http;
pub mod leftovers;
pub mod lifecycle;
pub mod metrics;
pub mod net;
pub mod playlists;
pub mod proxy;
pub mod refusals;
pub mod server;
pub mod server_io;
pub mod store;
pub mod webhook;

pub use app::{start, Running, ServeOptions, StartError};
