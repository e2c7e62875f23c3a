//! Arbitrary bytes through the Dockerfile parser, stage resolution and
//! mount resolution: nothing may panic, overflow the stack or hang.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use libfuzzer_sys::fuzz_target;
use rbuild_dockerfile::stages::{resolve, Platform, ResolveOptions};
use rbuild_dockerfile::{parse, parse_nodes, InstructionKind};

fuzz_target!(|data: &[u8]| {
    let _ = parse_nodes(data, "Dockerfile");
    let Ok(df) = parse(data, "Dockerfile") else { return };
    let args = BTreeMap::new();
    let named = BTreeSet::new();
    let (Some(build), Some(target)) = (Platform::parse("linux/amd64"), Platform::parse("linux/arm64")) else { return };
    let opts = ResolveOptions { build_args: &args, target: None, build_platform: build, target_platform: target, named_contexts: &named };
    let _ = resolve(&df, &opts);
    for stage in &df.stages {
        for inst in &stage.instructions {
            if let InstructionKind::Run(run) = &inst.kind {
                let _ = run.resolve_mounts(&|_| Some("x".into()), df.escape);
                let _ = run.script();
            }
        }
    }
});
