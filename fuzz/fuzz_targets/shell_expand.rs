//! Arbitrary words through BuildKit-style word expansion, in every lexer mode.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rbuild_dockerfile::fuzzing::shell_word(data));
