//! Arbitrary `.dockerignore` text and paths: parsing and matching must not
//! panic or blow up. The first line of the input is the path to test.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_dockerfile::IgnoreMatcher;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (path, patterns) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(m) = IgnoreMatcher::from_dockerignore(patterns) {
        let _ = m.matches(path, false);
        let _ = m.can_skip_dir(path);
    }
});
