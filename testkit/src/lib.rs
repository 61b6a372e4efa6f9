//! Test equipment that ships with acemux: an AceStream engine emulator that speaks the
//! engine's HTTP API and serves real MPEG-TS and HLS (with fault knobs), a TCP fault
//! relay that plays a slow or failing VPN hop, and the demo that puts the proxy in
//! front of the emulator. The `acemux` binary runs them as `emulate-engine`, `relay`
//! and `demo`; tests, benchmarks and the simulation use them as a library. None of it
//! is part of the proxy itself (crate `acemux`).

pub mod cli;
pub mod demo;
pub mod emulator;
pub mod relay;
