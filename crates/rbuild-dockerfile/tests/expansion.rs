//! Word expansion, case by case, against BuildKit's documented semantics
//! (Dockerfile reference, "Environment replacement"; BuildKit's shell lexer).
//! `E` marks inputs that must be rejected.

use std::collections::BTreeSet;

use rbuild_dockerfile::{
    ShellLexer, expand_word, expand_word_with_matches, expand_words, referenced_variables,
};

const E: &str = "\u{0}ERROR";

fn env(name: &str) -> Option<String> {
    let v = match name {
        "PWD" => "/home",
        "EMPTY" => "",
        "NAME" => "world",
        "FILE" => "/usr/src/app.tar.gz",
        "SP" => "a  b",
        "LEAD" => "  x y ",
        "PATHS" => "/a:/b:/c",
        "STAR" => "*",
        "K" => "한국어",
        "DOLLAR" => "$x",
        "QUOTE" => "it's",
        "NUM" => "42",
        "_U" => "under",
        "A1" => "alnum",
        "MULTI" => "l1\nl2",
        "SLASHES" => "a/b/c/d",
        "REPEAT" => "aaa",
        _ => return None,
    };
    Some(v.to_string())
}

/// (input, expected single-word expansion)
const WORD: &[(&str, &str)] = &[
    // plain text, quotes, escapes
    ("hello", "hello"),
    ("", ""),
    ("  spaced  ", "  spaced  "),
    ("'single'", "single"),
    ("\"double\"", "double"),
    ("mi'x'\"ed\"", "mixed"),
    ("'a b'", "a b"),
    ("\"a b\"", "a b"),
    ("a\\ b", "a b"),
    ("\\a", "a"),
    ("a\\", "a"),
    ("a\\\\", "a\\"),
    ("\\\"", "\""),
    ("\\'", "'"),
    ("'\\'", "\\"),
    ("'\\\\'", "\\\\"),
    ("\"\\\\\"", "\\"),
    ("\"\\a\"", "\\a"),
    ("\"\\$\"", "$"),
    ("\"\\\"\"", "\""),
    ("\"'\"", "'"),
    ("'\"'", "\""),
    ("''", ""),
    ("\"\"", ""),
    ("'unterminated", E),
    ("\"unterminated", E),
    ("\"a\\\"", E),
    ("it\\'s", "it's"),
    ("it's'", "its"),
    // simple variables
    ("$NAME", "world"),
    ("${NAME}", "world"),
    ("hello $NAME!", "hello world!"),
    ("$NAME$NAME", "worldworld"),
    ("${NAME}s", "worlds"),
    ("$NAMEs", ""),
    ("$_U", "under"),
    ("$A1", "alnum"),
    ("$A1x", ""),
    ("$UNSET", ""),
    ("${UNSET}", ""),
    ("a${UNSET}b", "ab"),
    ("$EMPTY", ""),
    ("$", "$"),
    ("a$", "a$"),
    ("$ a", "$ a"),
    ("$.", "$."),
    ("$/x", "$/x"),
    ("$-", ""),
    ("$1", ""),
    ("$12x", "x"),
    ("$@x", "x"),
    ("$$", ""),
    ("$K", "한국어"),
    ("'$NAME'", "$NAME"),
    ("\"$NAME\"", "world"),
    ("\"${NAME}\"", "world"),
    ("\\$NAME", "$NAME"),
    ("\\${NAME}", "${NAME}"),
    ("\"\\$NAME\"", "$NAME"),
    ("$DOLLAR", "$x"),
    ("$QUOTE", "it's"),
    ("$SP", "a  b"),
    ("\"$SP\"", "a  b"),
    ("$MULTI", "l1\nl2"),
    ("${PWD}/bin", "/home/bin"),
    ("${PWD}:${NAME}", "/home:world"),
    // ${} errors
    ("${}", E),
    ("${", E),
    ("${NAME", E),
    ("${NAME:", E),
    ("${:}", E),
    ("${{NAME}}", E),
    ("${NAME:=x}", E),
    ("${NAME=x}", E),
    ("${NAME x}", E),
    ("${.}", E),
    ("${NAME:x}", E),
    ("${NAME^^}", E),
    ("${NAME,}", E),
    // :- and -
    ("${UNSET:-def}", "def"),
    ("${UNSET-def}", "def"),
    ("${EMPTY:-def}", "def"),
    ("${EMPTY-def}", ""),
    ("${NAME:-def}", "world"),
    ("${NAME-def}", "world"),
    ("${UNSET:-}", ""),
    ("${UNSET:-a b}", "a b"),
    ("${UNSET:-$NAME}", "world"),
    ("${UNSET:-${NAME}}", "world"),
    ("${UNSET:-${ALSO:-deep}}", "deep"),
    ("${UNSET:-\"q\"}", "q"),
    ("${UNSET:-'q'}", "q"),
    ("${UNSET:-\\}}", "}"),
    ("${UNSET:-a}b}", "ab}"),
    ("${UNSET:-$}", "$"),
    ("${UNSET:-{x}", "{x"),
    ("${UNSET:-${x}", E),
    ("${UNSET:-x", E),
    // :+ and +
    ("${NAME:+alt}", "alt"),
    ("${NAME+alt}", "alt"),
    ("${EMPTY:+alt}", ""),
    ("${EMPTY+alt}", "alt"),
    ("${UNSET:+alt}", ""),
    ("${UNSET+alt}", ""),
    ("${NAME:+$PWD}", "/home"),
    ("${NAME:+${UNSET}}", ""),
    ("${NAME:+--flag=$NAME}", "--flag=world"),
    ("x${NAME:+}y", "xy"),
    // :? and ?
    ("${NAME:?msg}", "world"),
    ("${NAME?msg}", "world"),
    ("${EMPTY?msg}", ""),
    ("${EMPTY:?msg}", E),
    ("${UNSET?msg}", E),
    ("${UNSET:?msg}", E),
    ("${UNSET?}", E),
    ("${UNSET:?}", E),
    // # and ## (prefix removal)
    ("${FILE#*/}", "usr/src/app.tar.gz"),
    ("${FILE##*/}", "app.tar.gz"),
    ("${FILE#/usr}", "/src/app.tar.gz"),
    ("${FILE#nomatch}", "/usr/src/app.tar.gz"),
    ("${FILE#}", "/usr/src/app.tar.gz"),
    ("${FILE##}", "/usr/src/app.tar.gz"),
    ("${FILE#*}", "/usr/src/app.tar.gz"),
    ("${FILE##*}", ""),
    ("${FILE#?}", "usr/src/app.tar.gz"),
    ("${FILE#??}", "sr/src/app.tar.gz"),
    ("${FILE#/*/}", "src/app.tar.gz"),
    ("${FILE##/*/}", "app.tar.gz"),
    ("${PATHS#*:}", "/b:/c"),
    ("${PATHS##*:}", "/c"),
    ("${REPEAT#a}", "aa"),
    ("${REPEAT##a*}", ""),
    ("${STAR#\\*}", ""),
    ("${STAR#*}", "*"),
    ("${UNSET#x}", ""),
    ("${K#한}", "국어"),
    ("${SLASHES#*/*/}", "c/d"),
    ("${NAME#w?r}", "ld"),
    ("${NAME#\\q}", E),
    ("${NAME#$NAME}", ""),
    ("${NAME#\"w\"}", "orld"),
    // % and %% (suffix removal)
    ("${FILE%.*}", "/usr/src/app.tar"),
    ("${FILE%%.*}", "/usr/src/app"),
    ("${FILE%/*}", "/usr/src"),
    ("${FILE%%/*}", ""),
    ("${FILE%.gz}", "/usr/src/app.tar"),
    ("${FILE%nomatch}", "/usr/src/app.tar.gz"),
    ("${FILE%}", "/usr/src/app.tar.gz"),
    ("${FILE%*}", "/usr/src/app.tar.gz"),
    ("${FILE%%*}", ""),
    ("${FILE%?}", "/usr/src/app.tar.g"),
    ("${PATHS%:*}", "/a:/b"),
    ("${PATHS%%:*}", "/a"),
    ("${REPEAT%a}", "aa"),
    ("${REPEAT%%a}", "aa"),
    ("${REPEAT%%*a}", ""),
    ("${SLASHES%/*/*}", "a/b"),
    ("${K%어}", "한국"),
    ("${STAR%\\*}", ""),
    ("${UNSET%x}", ""),
    ("${NAME%l?}", "wor"),
    // / and // (substitution)
    ("${NAME/o/0}", "w0rld"),
    ("${NAME//o/0}", "w0rld"),
    ("${REPEAT/a/b}", "baa"),
    ("${REPEAT//a/b}", "bbb"),
    ("${PATHS//:/ }", "/a /b /c"),
    ("${PATHS//\\//-}", "-a:-b:-c"),
    ("${FILE/.tar.gz/.tgz}", "/usr/src/app.tgz"),
    ("${FILE/x/y}", "/usr/src/app.tar.gz"),
    ("${NAME/w*/W}", "W"),
    ("${NAME/?/W}", "World"),
    ("${NAME//?/.}", "....."),
    ("${NAME/o}", E),
    ("${NAME/o/}", "wrld"),
    ("${NAME//o/}", "wrld"),
    ("${NAME/o/0", E),
    ("${UNSET/a/b}", ""),
    ("${NAME/o/$PWD}", "w/homerld"),
    ("${SLASHES//\\//_}", "a_b_c_d"),
    ("${NAME/*/}", ""),
    ("${K/국/-}", "한-어"),
    // :# shortcuts BuildKit accepts
    ("${FILE:#*/}", "usr/src/app.tar.gz"),
    ("${FILE:%.*}", "/usr/src/app.tar"),
    // positional and special parameters are never set
    ("$0", ""),
    ("${0}", ""),
    ("${1:-one}", "one"),
    ("${#}", ""),
    ("${?:-q}", "q"),
    ("${*}x", "x"),
    ("${@:+set}", ""),
    ("$999x", "x"),
    // mixtures
    ("\"${NAME}\"'${NAME}'", "world${NAME}"),
    ("pre\"$NAME post\"", "preworld post"),
    ("\"${UNSET:-a \"b\"}\"", "a b"),
    ("${NAME}${NAME:+!}", "world!"),
    ("a${UNSET:-${NAME:+${PWD}}}z", "a/homez"),
    ("$PWD${PWD#/}", "/homehome"),
    ("\"$LEAD\"", "  x y "),
    ("$LEAD", "  x y "),
    ("${NUM}0", "420"),
    ("\\\\$NAME", "\\world"),
    ("\"\\\\$NAME\"", "\\world"),
    ("'a'\\''b'", "a'b"),
];

/// (input, expected fields joined by `|`)
const WORDS: &[(&str, &str)] = &[
    ("a b c", "a|b|c"),
    ("  a   b  ", "a|b"),
    ("\"a b\" c", "a b|c"),
    ("'a b' c", "a b|c"),
    ("a\\ b c", "a b|c"),
    ("$SP", "a|b"),
    ("\"$SP\"", "a  b"),
    ("x${SP}y", "xa|by"),
    ("$LEAD", "x|y"),
    ("\"$LEAD\"", "  x y "),
    ("pre$LEAD", "pre|x|y"),
    ("${UNSET:-a b}", "a|b"),
    ("\"${UNSET:-a b}\"", "a b"),
    ("$EMPTY", ""),
    ("a $EMPTY b", "a|b"),
    ("\"\"", ""),
    ("a \"\" b", "a|b"),
    ("$MULTI", "l1|l2"),
    ("${PATHS//:/ }", "/a|/b|/c"),
    ("$NAME$SP", "worlda|b"),
];

#[test]
fn single_word() {
    assert!(
        WORD.len() + WORDS.len() >= 200,
        "{} cases",
        WORD.len() + WORDS.len()
    );
    let mut failures = Vec::new();
    for (input, expected) in WORD {
        let got = expand_word(input, &env, '\\');
        let ok = match (&got, *expected) {
            (Err(_), E) => true,
            (Ok(v), e) => v == e,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{input:?}: expected {:?}, got {got:?}",
                if *expected == E { "error" } else { expected }
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn field_splitting() {
    let mut failures = Vec::new();
    for (input, expected) in WORDS {
        let got = expand_words(input, &env, '\\').map(|w| w.join("|"));
        if got.as_deref() != Ok(*expected) {
            failures.push(format!("{input:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn backtick_escape() {
    let cases = [
        ("a` b", "a b"),
        ("`$NAME", "$NAME"),
        ("\"`$NAME\"", "$NAME"),
        ("\"`\"\"", "\""),
        ("C:\\path", "C:\\path"),
        ("\"C:\\path\"", "C:\\path"),
        ("a``", "a`"),
        ("${UNSET:-`}}", "}"),
    ];
    for (input, expected) in cases {
        assert_eq!(
            expand_word(input, &env, '`').as_deref(),
            Ok(expected),
            "{input:?}"
        );
    }
}

#[test]
fn unset_variables_can_be_kept() {
    let lexer = ShellLexer {
        skip_unset_env: true,
        ..ShellLexer::new('\\')
    };
    let cases = [
        ("$UNSET", "$UNSET"),
        ("${UNSET}", "${UNSET}"),
        ("${UNSET:-x}", "${UNSET:-x}"),
        ("${UNSET/a/b}", "${UNSET/a/b}"),
        ("$NAME $UNSET", "world $UNSET"),
    ];
    for (input, expected) in cases {
        assert_eq!(
            lexer.process(input, &env).map(|e| e.value).as_deref(),
            Ok(expected),
            "{input:?}"
        );
    }
    let heredoc_heads = ShellLexer {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset_env: true,
        ..ShellLexer::new('\\')
    };
    let e = heredoc_heads
        .process("cat <<'EOF' > \"$OUT\" a\\ b", &env)
        .unwrap();
    assert_eq!(e.words, ["cat", "<<'EOF'", ">", "\"$OUT\"", "a\\ b"]);
}

#[test]
fn quote_processing_can_be_off() {
    let lexer = ShellLexer {
        skip_process_quotes: true,
        ..ShellLexer::new('\\')
    };
    assert_eq!(
        lexer.process("echo \"$NAME\" '$NAME'", &env).unwrap().value,
        "echo \"world\" 'world'"
    );
}

#[test]
fn matches_and_references() {
    let e = expand_word_with_matches("$NAME ${UNSET:-$PWD} ${EMPTY}", &env, '\\').unwrap();
    assert_eq!(
        e.matched,
        BTreeSet::from(["NAME".to_string(), "PWD".to_string(), "EMPTY".to_string()])
    );
    assert_eq!(e.unmatched, BTreeSet::from(["UNSET".to_string()]));
    let r = referenced_variables("'$NOT' \"$YES\" \\$NO ${A:+${B}}", '\\');
    assert_eq!(
        r,
        BTreeSet::from(["A".to_string(), "B".to_string(), "YES".to_string()])
    );
    assert!(referenced_variables("${", '\\').is_empty());
}

#[test]
fn error_messages_name_the_word() {
    let e = expand_word("x${UNSET:?needs a value}", &env, '\\')
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "failed to expand `x${UNSET:?needs a value}`: UNSET: needs a value"
    );
    let e = expand_word("${EMPTY:?}", &env, '\\')
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("EMPTY: is not allowed to be empty"), "{e}");
    let e = expand_word("${NAME", &env, '\\').unwrap_err().to_string();
    assert!(e.contains("missing `}`"), "{e}");
    let e = expand_word("${NAME:=x}", &env, '\\')
        .unwrap_err()
        .to_string();
    assert!(e.contains("unsupported modifier `:=`"), "{e}");
}
