//! `rbuild du`, `rbuild prune`, and the automatic GC after `rbuild build`.

use anyhow::{Context, bail};
use clap::Args;
use rbuild::{Builder, BuilderOptions, DiskUsage, PruneOptions, PruneReport, format_size};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use crate::images::now;

#[derive(Debug, Args)]
pub struct DuArgs {
    /// Show every snapshot, blob and cache mount in full.
    #[arg(short, long)]
    pub verbose: bool,
    /// Output format: `table` or `json`.
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all cache, not just records unused for 48 hours; cache mounts too.
    #[arg(short, long)]
    pub all: bool,
    /// Only remove what matches (`until=24h`: unused for 24 hours).
    #[arg(long = "filter")]
    pub filters: Vec<String>,
    /// Remove least recently used records until the cache uses at most this (`10GB`).
    #[arg(long)]
    pub keep_storage: Option<String>,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
    /// Output format: `table` or `json`.
    #[arg(long, default_value = "table")]
    pub format: String,
}

/// "5 minutes ago" for a time in seconds since the epoch (worded as
/// `rbuild images` words ages).
fn ago(t: i64, now: i64) -> String {
    crate::images::human_age(now - t)
}

fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

fn check_format(format: &str) -> anyhow::Result<bool> {
    match format {
        "table" => Ok(false),
        "json" => Ok(true),
        other => bail!("unknown --format `{other}` (expected table or json)"),
    }
}

fn print_du(out: &mut dyn Write, du: &DiskUsage, verbose: bool, now: i64) -> std::io::Result<()> {
    if verbose {
        for s in &du.snapshots {
            writeln!(out, "{:<13}{}", "ID:", s.id)?;
            if let Some(p) = &s.parent {
                writeln!(out, "{:<13}{p}", "Parent:")?;
            }
            writeln!(out, "{:<13}{}", "Description:", s.description)?;
            writeln!(out, "{:<13}{}", "Size:", format_size(s.size))?;
            writeln!(out, "{:<13}{}", "Last used:", ago(s.last_used, now))?;
            writeln!(out, "{:<13}{}", "Created:", ago(s.created, now))?;
            writeln!(out, "{:<13}{}", "Cache keys:", s.cache_keys)?;
            writeln!(out, "{:<13}{}", "In use:", s.in_use)?;
            if !s.recorded {
                writeln!(out, "{:<13}false", "Recorded:")?;
            }
            writeln!(out)?;
        }
        writeln!(out, "{:<73}{:<11}REFERENCED", "BLOB", "SIZE")?;
        for b in &du.blobs {
            writeln!(
                out,
                "{:<73}{:<11}{}",
                b.digest,
                format_size(b.size),
                b.referenced
            )?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "{:<14}{:<10}{:<11}IN USE",
            "CACHE MOUNT", "INSTANCE", "SIZE"
        )?;
        for c in &du.cache_mounts {
            let size = format_size(c.size);
            writeln!(
                out,
                "{:<14}{:<10}{:<11}{}",
                short(&c.id),
                c.instance,
                size,
                c.in_use
            )?;
        }
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{:<14}{:<11}{:<16}{:<8}DESCRIPTION",
            "SNAPSHOT", "SIZE", "LAST USED", "IN USE"
        )?;
        for s in du.snapshots.iter().rev() {
            let in_use = if s.in_use { "*" } else { "" };
            writeln!(
                out,
                "{:<14}{:<11}{:<16}{:<8}{}",
                short(&s.id),
                format_size(s.size),
                ago(s.last_used, now),
                in_use,
                s.description
            )?;
        }
    }
    let sum = |sizes: &mut dyn Iterator<Item = u64>| format_size(sizes.sum());
    let line = |out: &mut dyn Write, label: &str, count: String, size: String| {
        writeln!(out, "{label:<14}{count:<8}{size}")
    };
    line(
        out,
        "Snapshots:",
        du.snapshots.len().to_string(),
        sum(&mut du.snapshots.iter().map(|s| s.size)),
    )?;
    line(
        out,
        "Blobs:",
        du.blobs.len().to_string(),
        sum(&mut du.blobs.iter().map(|b| b.size)),
    )?;
    let mounts = sum(&mut du.cache_mounts.iter().map(|c| c.size));
    line(
        out,
        "Cache mounts:",
        du.cache_mounts.len().to_string(),
        mounts,
    )?;
    line(out, "Metadata:", String::new(), format_size(du.metadata))?;
    line(
        out,
        "Reclaimable:",
        String::new(),
        format_size(du.reclaimable),
    )?;
    line(out, "Total:", String::new(), format_size(du.total))
}

/// `rbuild du`.
pub async fn du(opts: BuilderOptions, args: DuArgs) -> anyhow::Result<ExitCode> {
    let json = check_format(&args.format)?;
    let builder = Builder::open(opts)?;
    let du = builder.disk_usage().await?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &du)?;
        writeln!(out)?;
    } else {
        print_du(&mut out, &du, args.verbose, now())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The prune options the flags mean.
fn prune_options(args: &PruneArgs) -> anyhow::Result<PruneOptions> {
    let mut opts = PruneOptions {
        all: args.all,
        ..PruneOptions::default()
    };
    for f in &args.filters {
        match f.split_once('=') {
            Some(("until" | "unused-for", d)) => opts.until = Some(rbuild::parse_duration(d)?),
            _ => bail!(
                "unsupported --filter `{f}`\nhint: rbuild supports until=DURATION (e.g. until=24h)"
            ),
        }
    }
    if let Some(k) = &args.keep_storage {
        opts.keep_storage = Some(rbuild::parse_size(k).context("--keep-storage")?);
    }
    Ok(opts)
}

/// Asks on the terminal; anything but `y`/`yes` (or no terminal) is no.
fn confirm(all: bool) -> bool {
    let what = if all {
        "all build cache (cache mounts included)"
    } else {
        "unused build cache"
    };
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "This removes {what}. Continue? [y/N] ");
    let _ = err.flush();
    if !std::io::stdin().is_terminal() {
        let _ = writeln!(err, "\nhint: no terminal to ask on; pass --force");
        return false;
    }
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

fn print_report(out: &mut impl Write, r: &PruneReport) -> std::io::Result<()> {
    if !r.snapshots.is_empty() {
        writeln!(out, "{:<14}{:<11}DESCRIPTION", "SNAPSHOT", "SIZE")?;
        for s in &r.snapshots {
            writeln!(
                out,
                "{:<14}{:<11}{}",
                short(&s.id),
                format_size(s.size),
                s.description
            )?;
        }
    }
    if !r.blobs.is_empty() {
        writeln!(out, "{:<22}{}", "Blobs removed:", r.blobs.len())?;
    }
    if !r.cache_mounts.is_empty() {
        writeln!(
            out,
            "{:<22}{}",
            "Cache mounts removed:",
            r.cache_mounts.len()
        )?;
    }
    writeln!(out, "{:<22}{}", "Total:", format_size(r.reclaimed))
}

/// `rbuild prune`.
pub async fn prune(opts: BuilderOptions, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let json = check_format(&args.format)?;
    let prune_opts = prune_options(&args)?;
    if !args.force && !confirm(args.all) {
        return Ok(ExitCode::from(1));
    }
    let builder = Builder::open(opts)?;
    let report = builder.prune(prune_opts).await?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print_report(&mut out, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}


#[cfg(test)]
mod tests {
    use super::*;

    fn args(filters: &[&str], keep: Option<&str>) -> PruneArgs {
        PruneArgs {
            all: false,
            filters: filters.iter().map(|s| s.to_string()).collect(),
            keep_storage: keep.map(str::to_string),
            force: true,
            format: "table".into(),
        }
    }

    #[test]
    fn filters_and_sizes_become_options() {
        let o = prune_options(&args(&["until=24h"], Some("1GB"))).unwrap();
        assert_eq!(o.until, Some(86400));
        assert_eq!(o.keep_storage, Some(1 << 30));
        assert!(!o.protect_own);
        let e = prune_options(&args(&["type=regular"], None)).unwrap_err();
        assert!(e.to_string().contains("`type=regular`"));
        assert!(prune_options(&args(&[], Some("big"))).is_err());
    }

    #[test]
    fn times_read_naturally() {
        let now = now();
        assert_eq!(ago(now, now), "Less than a minute ago");
        assert_eq!(ago(now - 60, now), "1 minute ago");
        assert_eq!(ago(now - 7200, now), "2 hours ago");
        assert_eq!(ago(now - 3 * 86400, now), "3 days ago");
    }

    fn sample() -> DiskUsage {
        let snap = |id: &str, parent: Option<&str>, size, last_used, description: &str, in_use| {
            rbuild::SnapshotEntry {
                id: id.into(),
                parent: parent.map(Into::into),
                size,
                created: last_used - 60,
                last_used,
                description: description.into(),
                cache_keys: 1,
                in_use,
                recorded: true,
            }
        };
        DiskUsage {
            snapshots: vec![
                snap(
                    "0123456789abcdef",
                    None,
                    2 << 20,
                    1_000,
                    "[base 2/3] COPY busybox /bin/busybox",
                    false,
                ),
                snap(
                    "fedcba9876543210",
                    Some("0123456789abcdef"),
                    4096,
                    90_000,
                    "[stage-1 2/2] RUN make",
                    true,
                ),
            ],
            blobs: vec![rbuild::BlobEntry {
                digest: format!("sha256:{}", "ab".repeat(32)),
                size: 1536,
                referenced: true,
            }],
            cache_mounts: vec![rbuild::CacheMountEntry {
                id: "c".repeat(64),
                instance: "0".into(),
                size: 10 << 20,
                in_use: false,
            }],
            metadata: 96 << 10,
            total: (2 << 20) + 4096 + 1536 + (10 << 20) + (96 << 10),
            reclaimable: (2 << 20) + (10 << 20),
        }
    }

    fn render(verbose: bool) -> String {
        let mut out = Vec::new();
        print_du(&mut out, &sample(), verbose, 100_000).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn du_table() {
        insta::assert_snapshot!(render(false));
    }

    #[test]
    fn du_verbose() {
        insta::assert_snapshot!(render(true));
    }

    #[test]
    fn prune_report() {
        let du = sample();
        let report = PruneReport {
            snapshots: du.snapshots[..1].to_vec(),
            blobs: du.blobs.clone(),
            cache_mounts: du.cache_mounts.clone(),
            reclaimed: du.reclaimable,
        };
        let mut out = Vec::new();
        print_report(&mut out, &report).unwrap();
        insta::assert_snapshot!(String::from_utf8(out).unwrap());
    }
}
