//! Man pages and shell completions generated from a binary's own clap
//! command line (never hand-written): `dmarec generate-docs DIR` and
//! `dmaplay generate-docs DIR` (`make install` runs them; handled before
//! the command line is parsed, so it is in no help, man page or
//! completion) write
//!
//! - `DIR/man/NAME.1` and `DIR/man/NAME-SUBCOMMAND.1` (clap_mangen),
//! - `DIR/completions/NAME.bash`, `_NAME` (zsh), `NAME.fish` (clap_complete).

use anyhow::{Context, Result};
use clap_complete::Shell;
use std::path::{Path, PathBuf};

/// When the arguments are `generate-docs DIR`: writes the man pages and
/// completions of `command()` into DIR and exits (status 0, or 1 with the
/// error). Otherwise returns.
pub fn generate_if_asked(command: impl FnOnce() -> clap::Command) {
    let args: Vec<std::ffi::OsString> = std::env::args_os().take(4).collect();
    if args.get(1).is_none_or(|a| a != "generate-docs") {
        return;
    }
    let command = command();
    let name = command.get_name().to_string();
    let [_, _, dir] = &args[..] else {
        eprintln!("usage: {name} generate-docs DIR");
        std::process::exit(2);
    };
    match generate(command, Path::new(dir)) {
        Ok(files) => {
            eprintln!(
                "{name}: {} man pages and completions in {}",
                files.len(),
                Path::new(dir).display()
            );
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            std::process::exit(1)
        }
    }
}

/// Writes the man pages and completions of `command`; returns the files.
pub fn generate(command: clap::Command, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut command = without_help_subcommands(command);
    command.build();
    let mut written = Vec::new();
    let man_dir = dir.join("man");
    std::fs::create_dir_all(&man_dir)
        .with_context(|| format!("{}: cannot create it", man_dir.display()))?;
    clap_mangen::generate_to(command.clone(), &man_dir)
        .with_context(|| format!("{}: writing man pages", man_dir.display()))?;
    let name = command.get_name().to_string();
    for entry in std::fs::read_dir(&man_dir)? {
        let file = entry?.file_name().to_string_lossy().into_owned();
        if file.starts_with(&format!("{name}.")) || file.starts_with(&format!("{name}-")) {
            written.push(man_dir.join(file));
        }
    }
    let completion_dir = dir.join("completions");
    std::fs::create_dir_all(&completion_dir)
        .with_context(|| format!("{}: cannot create it", completion_dir.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut command, &name, &completion_dir)
            .with_context(|| format!("{}: writing {shell} completion", completion_dir.display()))?;
        written.push(path);
    }
    written.sort();
    Ok(written)
}

/// No `help` subcommand pages (`NAME-help-record.1` would only repeat
/// `NAME-record.1`); `--help` stays.
fn without_help_subcommands(command: clap::Command) -> clap::Command {
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    let mut command = command.disable_help_subcommand(true);
    for name in names {
        command = command.mut_subcommand(name, without_help_subcommands);
    }
    command
}

#[cfg(test)]
mod tests {
    use super::generate;

    #[test]
    fn every_subcommand_gets_a_man_page_and_every_shell_a_completion() {
        let command = clap::Command::new("demo")
            .about("A demo")
            .subcommand(
                clap::Command::new("run").about("Runs").arg(
                    clap::Arg::new("fast")
                        .long("fast")
                        .action(clap::ArgAction::SetTrue),
                ),
            )
            .subcommand(clap::Command::new("hidden").hide(true));
        let dir = std::env::temp_dir().join(format!("dmarec-docgen-{}", std::process::id()));
        let files = generate(command, &dir).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        for expected in [
            "man/demo.1",
            "man/demo-run.1",
            "completions/demo.bash",
            "completions/_demo",
            "completions/demo.fish",
        ] {
            assert!(
                names.contains(&expected.to_string()),
                "{expected} not in {names:?}"
            );
        }
        assert!(
            !names.iter().any(|n| n.contains("hidden")),
            "hidden subcommand documented: {names:?}"
        );
        let run_page = std::fs::read_to_string(dir.join("man/demo-run.1")).unwrap();
        assert!(run_page.contains("fast"), "{run_page}");
        let bash = std::fs::read_to_string(dir.join("completions/demo.bash")).unwrap();
        assert!(bash.contains("--fast"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
