//! The `rbuild` command.

mod args;
mod build;
mod prune;
mod completions;
mod images;
mod login;
mod render;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Completion scripts need no namespace (nor a warning about one).
    if std::env::args_os().nth(1).is_some_and(|a| a == "completion")
        && let args::Command::Completion { shell } = args::Cli::parse().command
    {
        return completions::run(shell).unwrap_or(ExitCode::from(1));
    }
    // Before any thread starts: may run the sandbox helper or re-exec us
    // inside a user namespace.
    let ns = match rbuild::init() {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let cli = args::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("RBUILD_LOG"))
        .with_writer(std::io::stderr)
        .init();
    if let Some(w) = &ns.warning {
        eprintln!("warning: {w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: args::Cli) -> anyhow::Result<ExitCode> {
    let opts = rbuild::BuilderOptions { root: cli.root.clone(), ..Default::default() };
    match cli.command {
        args::Command::Build(b) => build::run(opts, b).await,
        args::Command::Du(a) => prune::du(opts, a).await,
        args::Command::Prune(a) => prune::prune(opts, a).await,
        args::Command::Images(a) => images::images(opts, a),
        args::Command::Rmi(a) => images::rmi(opts, a),
        args::Command::Tag(a) => images::tag(opts, a),
        args::Command::Push(a) => images::push(opts, a).await,
        args::Command::Save(a) => images::save(opts, a),
        args::Command::Load(a) => images::load(opts, a),
        args::Command::Run(a) => images::run(opts, a).await,
        args::Command::Login(a) => login::login(a).await,
        args::Command::Logout(a) => login::logout(a),
        args::Command::Completion { shell } => completions::run(shell),
    }
}
