//! Arbitrary words through BuildKit-style word expansion, in every lexer mode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_dockerfile::ShellLexer;

fuzz_target!(|data: &[u8]| {
    let Ok(word) = std::str::from_utf8(data) else { return };
    let lookup = |name: &str| (name.len() % 2 == 0).then(|| format!("v {name} *"));
    for escape in ['\\', '`'] {
        let mut lexer = ShellLexer::new(escape);
        let _ = lexer.process(word, &lookup);
        lexer.raw_quotes = true;
        lexer.raw_escapes = true;
        lexer.skip_unset_env = true;
        let _ = lexer.process(word, &lookup);
        lexer.skip_process_quotes = true;
        let _ = lexer.process(word, &lookup);
    }
});
