//! Arbitrary `.dockerignore` text and paths: parsing and matching must not
//! panic or blow up. The first line of the input is the path to test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rbuild_dockerfile::fuzzing::dockerignore(data));
