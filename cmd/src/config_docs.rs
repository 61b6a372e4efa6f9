//! `docs/config.md`, generated from the clap definitions: every subcommand's flags with
//! their environment variables, defaults and help. One source: a flag added to
//! `ServeArgs` (or any other) appears here by regenerating, with
//! `UPDATE_DOCS=1 cargo test -p acemux-cmd --test config_docs` or
//! `cargo run -- config-docs > docs/config.md`.

use std::fmt::Write as _;

use clap::{Arg, ArgAction, CommandFactory};

use crate::Cli;

/// Where the reference lives, from the repository root.
pub const PATH: &str = "docs/config.md";

/// How to regenerate it, for messages.
pub const REGENERATE: &str = "UPDATE_DOCS=1 cargo test -p acemux-cmd --test config_docs";

/// The configuration reference of the `acemux` binary, as `docs/config.md` holds it.
pub fn reference() -> String {
    let preamble = format!(
        "<!-- Generated from the flag definitions: do not edit; regenerate with \
         `{REGENERATE}` (or `cargo run -- config-docs > {PATH}`). -->\n\n\
         Every option is a flag and an environment variable; a flag on the command line \
         wins over its variable. Durations take a unit (`500ms`, `10s`, `2m`, `24h`). A \
         switch (a flag without a value) is set by its variable as `true` or `false`. \
         `acemux --version` prints the version and the commit it was built from; \
         `acemux <subcommand> --help` prints the same help as below."
    );
    render(Cli::command(), &preamble)
}

/// The reference of any command: a title, `preamble`, its global options, then one
/// section per visible subcommand.
pub fn render(mut command: clap::Command, preamble: &str) -> String {
    // Built, so that defaults of switches and value parsers are filled in as parsing
    // sees them; global options are then copied into every subcommand (marked global,
    // and listed once, under the command itself).
    command.build();
    let name = command.get_name().to_owned();
    let mut out = String::new();
    let _ = writeln!(out, "# Configuration reference");
    let _ = writeln!(out);
    let _ = writeln!(out, "{preamble}");
    let globals: Vec<&Arg> = command.get_arguments().filter(|arg| listed(arg)).collect();
    if !globals.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "## Global options");
        let _ = writeln!(out);
        let _ = writeln!(out, "Given before or after the subcommand.");
        let _ = writeln!(out);
        table(&mut out, &globals);
    }
    for sub in command.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "## `{name} {}`", sub.get_name());
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            let _ = writeln!(out);
            let _ = writeln!(out, "{}", sentence(&about.to_string()));
        }
        let args: Vec<&Arg> = sub
            .get_arguments()
            .filter(|arg| listed(arg) && !arg.is_global_set())
            .collect();
        let _ = writeln!(out);
        if args.is_empty() {
            let _ = writeln!(out, "No options.");
        } else {
            table(&mut out, &args);
        }
    }
    out
}

/// Whether an argument belongs in the reference: not hidden, not `--help`/`--version`.
fn listed(arg: &Arg) -> bool {
    !arg.is_hide_set()
        && !matches!(
            arg.get_action(),
            ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
        )
}

fn table(out: &mut String, args: &[&Arg]) {
    let _ = writeln!(out, "| flag | environment | default | description |");
    let _ = writeln!(out, "|---|---|---|---|");
    for arg in args {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            cell(&flag(arg)),
            cell(&env(arg)),
            cell(&default(arg)),
            cell(&description(arg))
        );
    }
}

/// `--name <VALUE>`, `-s, --name <VALUE>…` (repeatable), or `--name` (a switch); a
/// positional argument as `<NAME>`.
fn flag(arg: &Arg) -> String {
    let value = arg
        .get_value_names()
        .and_then(|names| names.first())
        .map_or_else(
            || arg.get_id().as_str().to_uppercase(),
            |name| name.to_string(),
        );
    let takes_value = arg.get_num_args().is_some_and(|range| range.takes_values())
        && !matches!(
            arg.get_action(),
            ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count
        );
    let repeat = if matches!(arg.get_action(), ArgAction::Append) {
        "…"
    } else {
        ""
    };
    if arg.is_positional() {
        return format!("`<{value}>{repeat}`");
    }
    let mut text = String::from("`");
    if let Some(short) = arg.get_short() {
        let _ = write!(text, "-{short}, ");
    }
    if let Some(long) = arg.get_long() {
        let _ = write!(text, "--{long}");
    }
    if takes_value {
        let _ = write!(text, " <{value}>{repeat}");
    }
    text.push('`');
    text
}

fn env(arg: &Arg) -> String {
    arg.get_env()
        .map_or_else(String::new, |env| format!("`{}`", env.to_string_lossy()))
}

fn default(arg: &Arg) -> String {
    if arg.is_required_set() {
        return "required".to_owned();
    }
    if arg.is_hide_default_value_set() {
        return String::new();
    }
    let values: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|value| value.to_string_lossy().into_owned())
        .collect();
    if values.is_empty() {
        String::new()
    } else {
        format!("`{}`", values.join(","))
    }
}

/// The help text, then the values an enumerated option takes.
fn description(arg: &Arg) -> String {
    let mut text = arg
        .get_long_help()
        .or_else(|| arg.get_help())
        .map(|help| sentence(&help.to_string()))
        .unwrap_or_default();
    let values: Vec<String> = if arg.is_hide_possible_values_set() {
        Vec::new()
    } else {
        arg.get_possible_values()
            .iter()
            .filter(|value| !value.is_hide_set())
            .map(|value| match value.get_help() {
                Some(help) => format!("`{}` ({})", value.get_name(), sentence(&help.to_string())),
                None => format!("`{}`", value.get_name()),
            })
            .collect()
    };
    // A switch's `true`/`false` say nothing the description does not.
    let is_switch = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
    if !values.is_empty() && !is_switch {
        if !text.is_empty() {
            text.push(' ');
        }
        let _ = write!(text, "Values: {}.", values.join(", "));
    }
    text
}

/// Help text as one line (a table cell holds no line breaks), ending as a sentence
/// (clap drops the full stop of a one-sentence doc comment).
fn sentence(text: &str) -> String {
    let mut line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if !line.is_empty() && !line.ends_with(['.', '!', '?']) {
        line.push('.');
    }
    line
}

/// Text safe inside a Markdown table cell: `|` escaped (also inside code spans, as
/// GitHub's tables require).
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, Parser, Subcommand, ValueEnum};

    #[derive(Clone, Copy, Debug, ValueEnum)]
    enum Shape {
        /// Round things.
        Round,
        /// Square things.
        Square,
    }

    #[derive(Debug, Args)]
    struct PaintArgs {
        /// Where to paint, `host:port`. Repeatable; comma-separated in the environment.
        #[arg(long = "wall", env = "T_WALLS", value_delimiter = ',')]
        walls: Vec<String>,
        /// Paint the `a|b` way.
        #[arg(long, env = "T_GLOSSY")]
        glossy: bool,
        /// The shape.
        #[arg(long, env = "T_SHAPE", value_enum, default_value_t = Shape::Round)]
        shape: Shape,
        /// Coats.
        #[arg(long, env = "T_COATS", default_value_t = 2)]
        coats: u32,
        /// The secret.
        #[arg(long, env = "T_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Brush to use.
        #[arg(long)]
        brush: String,
    }

    #[derive(Debug, Subcommand)]
    enum Sub {
        /// Paint a wall.
        Paint(PaintArgs),
        /// Internal.
        #[command(hide = true)]
        Secret,
        /// Rest.
        Rest,
    }

    /// Test tool.
    #[derive(Debug, Parser)]
    #[command(name = "tool", version)]
    struct Tool {
        /// Verbose output.
        #[arg(long, global = true, env = "T_VERBOSE")]
        verbose: bool,
        #[command(subcommand)]
        sub: Sub,
    }

    fn rendered() -> String {
        render(Tool::command(), "Preamble.")
    }

    fn row<'a>(text: &'a str, flag: &str) -> &'a str {
        let start = format!("| `{flag}");
        let found: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with(&start))
            .collect();
        assert_eq!(found.len(), 1, "one row for {flag} in:\n{text}");
        found[0]
    }

    #[test]
    fn each_flag_has_its_env_default_and_help_in_its_subcommand_section() {
        let text = rendered();
        assert_eq!(
            row(&text, "--coats"),
            "| `--coats <COATS>` | `T_COATS` | `2` | Coats. |"
        );
        assert_eq!(
            row(&text, "--wall"),
            "| `--wall <WALLS>…` | `T_WALLS` |  | Where to paint, `host:port`. Repeatable; \
             comma-separated in the environment. |"
        );
        assert_eq!(
            row(&text, "--shape"),
            "| `--shape <SHAPE>` | `T_SHAPE` | `round` | The shape. Values: `round` (Round \
             things.), `square` (Square things.). |"
        );
        assert_eq!(
            row(&text, "--glossy"),
            "| `--glossy` | `T_GLOSSY` | `false` | Paint the `a\\|b` way. |",
            "a switch shows no value; `|` is escaped inside the cell"
        );
        assert_eq!(
            row(&text, "--brush"),
            "| `--brush <BRUSH>` |  | required | Brush to use. |"
        );
        assert!(row(&text, "--secret").contains("`T_SECRET`"), "{text}");
    }

    #[test]
    fn globals_are_listed_once_and_hidden_things_and_help_not_at_all() {
        let text = rendered();
        assert_eq!(text.matches("`--verbose`").count(), 1, "{text}");
        let globals = text.find("## Global options").expect("a global section");
        let paint = text.find("## `tool paint`").expect("a paint section");
        assert!(globals < paint);
        assert!(text[globals..paint].contains("`--verbose`"));
        assert!(
            text.contains("## `tool rest`\n\nRest.\n\nNo options.\n"),
            "{text}"
        );
        assert!(
            !text.contains("secret`"),
            "hidden subcommand listed:\n{text}"
        );
        assert!(!text.contains("tool help"), "{text}");
        assert!(!text.contains("| `-h, --help"), "{text}");
        assert!(!text.contains("| `-V, --version"), "{text}");
    }

    #[test]
    fn the_acemux_reference_covers_every_subcommand_and_every_variable() {
        let text = reference();
        for section in [
            "## Global options",
            "## `acemux serve`",
            "## `acemux emulate-engine`",
            "## `acemux demo`",
            "## `acemux relay`",
            "## `acemux health`",
        ] {
            assert!(text.contains(section), "{section} missing");
        }
        assert!(
            !text.contains("config-docs`\n"),
            "the hidden subcommand is not listed"
        );
        let variables = crate::variables();
        assert!(variables.len() > 50, "{variables:?}");
        for name in [
            "ACEMUX_LOG",
            "ACEMUX_LISTEN",
            "ACEMUX_ENGINES",
            "ACEMUX_HEALTH_URL",
        ] {
            assert!(
                variables.iter().any(|known| known == name),
                "{name} missing"
            );
        }
        for name in variables {
            assert!(text.contains(&format!("`{name}`")), "{name} missing");
        }
    }
}
