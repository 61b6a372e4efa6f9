//! `docs/config.md` is the configuration reference generated from the flag
//! definitions; this test fails when it is stale and, with `UPDATE_DOCS=1`, rewrites it.

use std::path::PathBuf;

use acemux_cmd::config_docs::{reference, PATH, REGENERATE};

#[test]
fn docs_config_md_matches_the_flag_definitions() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(PATH);
    let generated = reference();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).expect("write docs/config.md");
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current != generated {
        let first_difference = current
            .lines()
            .zip(generated.lines())
            .enumerate()
            .find(|(_, (old, new))| old != new)
            .map_or_else(
                || {
                    format!(
                        "{} lines now, {} generated",
                        current.lines().count(),
                        generated.lines().count()
                    )
                },
                |(index, (old, new))| {
                    format!(
                        "line {}:\n  now:       {old}\n  generated: {new}",
                        index + 1
                    )
                },
            );
        panic!("{PATH} is stale; regenerate it with `{REGENERATE}`. First difference, {first_difference}");
    }
}
