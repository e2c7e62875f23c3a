//! The image config a conversion produces, pinned to what current BuildKit
//! writes (the end-to-end parity test checks the same against a real
//! BuildKit; these keep each rule visible and fast to run).

use super::dispatch::{go_duration, go_quote_rune};
use super::{BaseImage, ConvertOptions, ImageKey, convert};
use rbuild_oci::config::ImageConfig;
use rbuild_oci::platform::Platform;
use std::collections::BTreeMap;
use std::time::Duration;

fn opts() -> ConvertOptions {
    ConvertOptions {
        target_platform: "linux/amd64".into(),
        build_platform: "linux/amd64".into(),
        ..ConvertOptions::default()
    }
}

fn config_with(src: &str, opts: &ConvertOptions, images: &BTreeMap<ImageKey, BaseImage>) -> ImageConfig {
    let df = crate::parse(src.as_bytes(), "Dockerfile").expect("parses");
    convert(&df, opts, images).expect("converts").config
}

fn config(src: &str) -> ImageConfig {
    config_with(src, &opts(), &BTreeMap::new())
}

/// `created_by` of every history entry, with `(empty)` marking entries
/// without a layer.
fn history(c: &ImageConfig) -> Vec<String> {
    c.history
        .iter()
        .map(|h| {
            let by = h.created_by.clone().unwrap_or_default();
            if h.empty_layer { format!("{by} (empty)") } else { by }
        })
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn scratch_stages_start_in_root_with_the_default_path() {
    let c = config("FROM scratch\n");
    assert_eq!(c.config.working_dir.as_deref(), Some("/"));
    assert_eq!(c.config.env, Some(strings(&["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])));
}

#[test]
fn an_image_without_path_gets_the_default_one() {
    let mut base = ImageConfig::new(&Platform::new("linux", "amd64", None));
    base.config.env = Some(strings(&["A=1"]));
    let mut images = BTreeMap::new();
    images.insert(
        ("base".to_string(), "linux/amd64".to_string()),
        BaseImage { reference: "docker.io/library/base@sha256:00".into(), config: base },
    );
    let c = config_with("FROM base\n", &opts(), &images);
    assert_eq!(c.config.env, Some(strings(&["A=1", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])));
}

#[test]
fn cmd_sets_args_escaped_and_entrypoint_does_not() {
    let c = config("FROM scratch\nENTRYPOINT [\"/e\"]\n");
    assert_eq!(c.config.args_escaped, None);
    let c = config("FROM scratch\nCMD [\"/c\"]\n");
    assert_eq!(c.config.args_escaped, Some(true));
    let c = config("FROM scratch\nCMD echo hi\n");
    assert_eq!(c.config.cmd, Some(strings(&["/bin/sh", "-c", "echo hi"])));
    assert_eq!(c.config.args_escaped, Some(true));
}

#[test]
fn env_values_expand_against_the_environment_before_the_instruction() {
    let c = config("FROM scratch\nENV A=1\nENV A=2 B=$A\n");
    let env = c.config.env.clone().unwrap();
    assert!(env.contains(&"A=2".to_string()) && env.contains(&"B=1".to_string()), "{env:?}");
    assert_eq!(history(&c)[1], "ENV A=2 B=1 (empty)");
}

#[test]
fn expose_expands_ranges_and_records_the_ports_as_written() {
    let c = config("FROM scratch\nEXPOSE 80 8000-8001/udp 443/TCP 80\n");
    let ports: Vec<String> = c.config.exposed_ports.clone().unwrap().into_keys().collect();
    assert_eq!(ports, strings(&["443/tcp", "80/tcp", "8000/udp", "8001/udp"]));
    assert_eq!(history(&c), ["EXPOSE [80/tcp 8000/udp 8001/udp 443/tcp 80/tcp] (empty)"]);
}

#[test]
fn bad_expose_specs_are_errors() {
    let df = crate::parse(b"FROM scratch\nEXPOSE 80/icmp\n", "Dockerfile").unwrap();
    let err = convert(&df, &opts(), &BTreeMap::new()).unwrap_err();
    assert!(err.to_string().contains("80/icmp"), "{err}");
}

#[test]
fn shell_history_is_unquoted_and_shell_form_commands_use_it() {
    let c = config("FROM scratch\nSHELL [\"/bin/sh\", \"-ec\"]\nCMD echo hi\n");
    assert_eq!(c.config.cmd, Some(strings(&["/bin/sh", "-ec", "echo hi"])));
    assert_eq!(history(&c), ["SHELL [/bin/sh -ec] (empty)", "CMD [\"/bin/sh\" \"-ec\" \"echo hi\"] (empty)"]);
}

#[test]
fn healthcheck_history_is_go_formatted_config() {
    let c = config("FROM scratch\nHEALTHCHECK --interval=5m --timeout=3s --retries=3 CMD curl -f http://x/ || exit 1\nHEALTHCHECK NONE\n");
    assert_eq!(
        history(&c),
        [
            "HEALTHCHECK &{[\"CMD-SHELL\" \"curl -f http://x/ || exit 1\"] \"5m0s\" \"3s\" \"0s\" \"0s\" '\\x03'} (empty)",
            "HEALTHCHECK &{[\"NONE\"] \"0s\" \"0s\" \"0s\" \"0s\" '\\x00'} (empty)",
        ]
    );
    assert_eq!(c.config.healthcheck.unwrap().test, Some(strings(&["NONE"])));
}

#[test]
fn workdir_claims_a_layer_without_the_buildkit_marker_except_for_root() {
    let c = config("FROM scratch\nWORKDIR /app\nWORKDIR sub\nWORKDIR /\n");
    assert_eq!(history(&c), ["WORKDIR /app", "WORKDIR /app/sub", "WORKDIR / (empty)"]);
    assert_eq!(c.config.working_dir.as_deref(), Some("/"));
}

#[test]
fn onbuild_is_config_only() {
    let c = config("FROM scratch\nONBUILD RUN echo hi\n");
    assert!(c.history.is_empty(), "{:?}", history(&c));
    assert_eq!(c.config.on_build, Some(strings(&["RUN echo hi"])));
}

#[test]
fn onbuild_triggers_of_a_stage_base_run_as_plain_instructions() {
    let c = config("FROM scratch AS a\nONBUILD ENV T=1\nFROM a\n");
    assert_eq!(history(&c), ["ENV T=1 (empty)"]);
    assert_eq!(c.config.on_build, None);
}

#[test]
fn run_history_lists_every_declared_arg_as_the_run_sees_it() {
    let mut o = opts();
    o.build_args.insert("B".into(), "bee".into());
    let src = "ARG G=g\nFROM scratch\nARG G\nARG A=1 B\nENV A=env\nARG D\nRUN true\n";
    let c = config_with(src, &o, &BTreeMap::new());
    let h = history(&c);
    assert_eq!(h[0], "ARG G=g (empty)");
    assert_eq!(h[1], "ARG A=1 B=bee (empty)");
    assert_eq!(h[4], "RUN |4 G=g A=env B=bee D= /bin/sh -c true # buildkit");
}

#[test]
fn a_stage_built_on_another_keeps_its_arg_values_but_not_its_run_args() {
    let c = config("FROM scratch AS a\nARG X=1\nFROM a\nENV Y=${X:-unset}\nRUN true\n");
    assert_eq!(history(&c)[1..], ["ENV Y=1 (empty)", "RUN /bin/sh -c true # buildkit"]);
}

#[test]
fn copy_history_keeps_chown_and_chmod() {
    let c = config("FROM scratch\nARG U=7\nCOPY --chmod=0755 --chown=$U:8 a b /d/\nADD --chown=1 x /y\n");
    let h = history(&c);
    assert_eq!(h[1], "COPY --chown=7:8 --chmod=0755 a b /d/ # buildkit");
    assert_eq!(h[2], "ADD --chown=1 x /y # buildkit");
}

#[test]
fn go_durations() {
    for (ns, want) in [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (250_000_000, "250ms"),
        (1_000_000_000, "1s"),
        (1_500_000_000, "1.5s"),
        (90_000_000_000, "1m30s"),
        (300_000_000_000, "5m0s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_723_500_000_000, "1h2m3.5s"),
    ] {
        assert_eq!(go_duration(Duration::from_nanos(ns)), want, "{ns} ns");
    }
}

#[test]
fn go_quoted_runes() {
    assert_eq!(go_quote_rune(0), "'\\x00'");
    assert_eq!(go_quote_rune(3), "'\\x03'");
    assert_eq!(go_quote_rune(10), "'\\n'");
    assert_eq!(go_quote_rune(65), "'A'");
    assert_eq!(go_quote_rune(39), "'\\''");
    assert_eq!(go_quote_rune(127), "'\\x7f'");
    assert_eq!(go_quote_rune(-1), "'\u{FFFD}'");
}

#[test]
fn run_heredocs_go_through_the_shell_as_buildkit_writes_them() {
    let c = config("FROM scratch\nRUN <<EOF\n#!/bin/busybox sh\necho hi\nEOF\nRUN <<EOF\necho plain\nEOF\nRUN cat <<EOF > /f\nx\nEOF\n");
    assert_eq!(
        history(&c),
        [
            "RUN /bin/sh -c /dev/pipes/EOF # buildkit",
            "RUN /bin/sh -c echo plain\n # buildkit",
            "RUN /bin/sh -c cat <<EOF > /f\nx\nEOF # buildkit",
        ]
    );
}

#[test]
fn an_arg_declared_after_an_env_shadows_it_until_the_next_env() {
    let c = config("FROM scratch\nENV A=env\nARG A=arg\nENV B=$A\nENV A=env2\nENV C=$A\n");
    let env = c.config.env.clone().unwrap();
    for want in ["A=env2", "B=arg", "C=env2"] {
        assert!(env.contains(&want.to_string()), "{want} in {env:?}");
    }
}

#[test]
fn a_volume_word_with_an_unclosed_quote_is_an_error_as_in_buildkit() {
    let df = crate::parse(b"FROM scratch\nVOLUME \"/quoted path\"\n", "Dockerfile").unwrap();
    assert!(convert(&df, &opts(), &BTreeMap::new()).is_err());
}

#[test]
fn a_redeclared_arg_appears_once_in_run_history() {
    let c = config("FROM scratch\nARG A=1\nARG B\nARG A=2\nARG B\nRUN true\n");
    assert_eq!(history(&c).last().unwrap(), "RUN |2 A=2 B= /bin/sh -c true # buildkit");
}

#[test]
fn expose_accepts_host_mappings_and_exposes_the_container_port() {
    let c = config("FROM scratch\nEXPOSE 8080:80 127.0.0.1:9000-9001:90-91/udp [::1]::53\n");
    assert_eq!(history(&c), ["EXPOSE [80/tcp 90/udp 91/udp 53/tcp] (empty)"]);
    for bad in ["EXPOSE 1.2.3:80:80", "EXPOSE x:80"] {
        let df = crate::parse(format!("FROM scratch\n{bad}\n").as_bytes(), "Dockerfile").unwrap();
        assert!(convert(&df, &opts(), &BTreeMap::new()).is_err(), "{bad}");
    }
}
