//! `rbuild login` and `rbuild logout`, as `docker login`/`logout`.

use anyhow::{Context, bail};
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry (`HOST[:PORT]`; default: Docker Hub).
    pub registry: Option<String>,
    /// User name (asked for on a terminal when missing).
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin: the command line is visible to other users).
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry (`HOST[:PORT]`; default: Docker Hub).
    pub registry: Option<String>,
}

/// One line from standard input, without its line end.
fn read_line(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).with_context(|| format!("reading the {what} from standard input"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Writes a prompt or note for the user (stderr: stdout is for results).
fn prompt_on_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// Reads a line from the terminal without echoing it.
fn read_hidden(prompt: &str) -> anyhow::Result<String> {
    prompt_on_stderr(prompt);
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for a terminal fd.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `term` is a valid termios for the duration of the call.
    let saved = (unsafe { libc::tcgetattr(fd, &mut term) } == 0).then_some(term);
    if let Some(mut t) = saved {
        t.c_lflag &= !libc::ECHO;
        // SAFETY: `t` is a valid termios obtained from tcgetattr.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
    }
    let line = read_line("password");
    if let Some(t) = saved {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
    }
    prompt_on_stderr("\n");
    line
}

pub async fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let registry = rbuild::login::registry_name(args.registry.as_deref())?;
    let interactive = std::io::stdin().is_terminal();
    if args.password_stdin && args.password.is_some() {
        bail!("--password and --password-stdin are mutually exclusive");
    }
    if args.password_stdin && args.username.is_none() {
        bail!("--password-stdin needs --username");
    }
    let username = match args.username {
        Some(u) => u,
        None if interactive => {
            prompt_on_stderr("Username: ");
            read_line("username")?
        }
        None => bail!("no username (hint: --username NAME --password-stdin)"),
    };
    let password = match args.password {
        Some(p) => {
            prompt_on_stderr("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n");
            p
        }
        None if args.password_stdin => {
            let mut all = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut all)
                .context("reading the password from standard input")?;
            all.trim_end_matches(['\n', '\r']).to_string()
        }
        None if interactive => read_hidden("Password: ")?,
        None => bail!("no password (hint: --password-stdin)"),
    };
    let config = rbuild::Config::load_default()?;
    rbuild::login::login(&config, &registry, &username, &password).await?;
    let saved = rbuild::login::config_path();
    prompt_on_stderr(&format!("Credentials saved in {} for {registry}\n", saved.display()));
    writeln!(std::io::stdout().lock(), "Login Succeeded")?;
    Ok(ExitCode::SUCCESS)
}

pub fn logout(args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let registry = rbuild::login::registry_name(args.registry.as_deref())?;
    if rbuild::login::logout(&registry)? {
        writeln!(std::io::stdout().lock(), "Removing login credentials for {registry}")?;
    } else {
        writeln!(std::io::stdout().lock(), "Not logged in to {registry}")?;
    }
    Ok(ExitCode::SUCCESS)
}
