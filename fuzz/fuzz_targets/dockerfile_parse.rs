//! Arbitrary bytes through the Dockerfile parser, stage resolution and
//! mount resolution: nothing may panic, overflow the stack or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rbuild_dockerfile::fuzzing::dockerfile(data));
