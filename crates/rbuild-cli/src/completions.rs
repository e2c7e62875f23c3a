//! `rbuild completion SHELL`: shell completion scripts, generated from the
//! same argument definitions the parser uses, so they never fall behind.

use clap::CommandFactory;
use clap_complete::Shell;
use std::io::Write;
use std::process::ExitCode;

/// Writes the completion script for `shell` to standard output.
///
/// Install with e.g. `rbuild completion bash > /etc/bash_completion.d/rbuild`
/// or `rbuild completion fish > ~/.config/fish/completions/rbuild.fish`.
pub fn run(shell: Shell) -> anyhow::Result<ExitCode> {
    let mut cmd = crate::args::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "rbuild", &mut script);
    std::io::stdout().lock().write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}
