//! Every driver over random bytes (so that the fuzz targets' logic runs in every test
//! run), and every kept fuzz input replayed.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::{Driver, DRIVERS};

fn fuzz_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
}

/// Every file under `fuzz/<kind>/<target>/`, by target.
fn inputs(kind: &str) -> Vec<(Driver, PathBuf)> {
    let mut inputs = Vec::new();
    for (name, driver) in DRIVERS {
        let dir = fuzz_dir(kind).join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries
            .map(|entry| entry.expect("readable").path())
            .collect();
        paths.sort();
        inputs.extend(paths.into_iter().map(|path| ((name, driver), path)));
    }
    inputs
}

fn replay(kind: &str) -> usize {
    let inputs = inputs(kind);
    for ((name, driver), path) in &inputs {
        let data = std::fs::read(path).expect("a readable input");
        let outcome = std::panic::catch_unwind(|| driver(&data));
        assert!(outcome.is_ok(), "{name} fails on {}", path.display());
    }
    inputs.len()
}

#[test]
fn every_kept_crash_input_passes() {
    // The directory may be empty: crashes are fixed before they are kept.
    replay("regressions");
}

#[test]
fn every_seed_input_passes_and_every_target_has_seeds() {
    assert!(replay("corpus") >= DRIVERS.len());
    for (name, _) in DRIVERS {
        let seeds = std::fs::read_dir(fuzz_dir("corpus").join(name));
        let count = seeds.map(|entries| entries.count()).unwrap_or(0);
        assert!(count > 0, "no seed corpus for {name}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn drivers_hold_on_random_bytes(
        target in 0..DRIVERS.len(),
        data in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        (DRIVERS[target].1)(&data);
    }
}
