//! Text helpers shared by the renderers: making hostile output safe to put
//! on a terminal, display widths, sizes and durations.
//!
//! Build output comes from programs inside the image, so it may carry escape
//! sequences that move the cursor, retitle the window or clear the screen.
//! The live view redraws by moving the cursor up a known number of lines; a
//! single stray sequence would corrupt every later frame, so everything that
//! reaches the terminal goes through [`clean_line`] first.

/// One line of output as a terminal would show it, made inert: the text
/// after the last carriage return (progress bars redraw with `\r`), with
/// ANSI escape sequences and other control characters removed and tabs
/// kept for the caller to expand.
pub fn clean_line(line: &str) -> String {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let visible = line.rsplit('\r').next().unwrap_or(line);
    let mut out = String::with_capacity(visible.len());
    let mut chars = visible.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => skip_escape(&mut chars),
            '\t' => out.push('\t'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Skips the rest of an escape sequence whose ESC was just read: CSI
/// (`ESC [ … final`), OSC (`ESC ] … BEL` or `ESC ] … ESC \`), or a
/// two-character sequence.
fn skip_escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match chars.next() {
        Some('[') => {
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        }
        Some(']') | Some('P') | Some('_') | Some('^') => {
            while let Some(c) = chars.next() {
                if c == '\u{7}' {
                    break;
                }
                if c == '\u{1b}' {
                    if chars.peek() == Some(&'\\') {
                        chars.next();
                    }
                    break;
                }
            }
        }
        _ => {}
    }
}

/// Columns a character takes on a terminal: 0 for combining marks, 2 for
/// East Asian wide characters and emoji, 1 otherwise. An approximation of
/// `wcwidth` that is good enough to keep lines from wrapping.
fn char_width(c: char) -> usize {
    let u = c as u32;
    match u {
        0x0300..=0x036f | 0x200b..=0x200f | 0xfe00..=0xfe0f => 0,
        0x1100..=0x115f
        | 0x2e80..=0x303e
        | 0x3041..=0x33ff
        | 0x3400..=0x4dbf
        | 0x4e00..=0x9fff
        | 0xa000..=0xa4cf
        | 0xac00..=0xd7a3
        | 0xf900..=0xfaff
        | 0xfe30..=0xfe4f
        | 0xff00..=0xff60
        | 0xffe0..=0xffe6
        | 0x1f300..=0x1f64f
        | 0x1f900..=0x1f9ff
        | 0x20000..=0x3fffd => 2,
        _ => 1,
    }
}

/// Display width of a string without escape sequences.
pub fn width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// Expands tabs to the next multiple of eight columns.
pub fn expand_tabs(s: &str) -> String {
    if !s.contains('\t') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    let mut col = 0;
    for c in s.chars() {
        if c == '\t' {
            let n = 8 - col % 8;
            out.extend(std::iter::repeat_n(' ', n));
            col += n;
        } else {
            out.push(c);
            col += char_width(c);
        }
    }
    out
}

/// The longest prefix of `s` that fits in `max` columns.
pub fn truncate(s: &str, max: usize) -> &str {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        let w = char_width(c);
        if used + w > max {
            return &s[..i];
        }
        used += w;
    }
    s
}

/// Seconds with one decimal, as BuildKit prints step timers (`1.2s`).
pub fn secs(ms: u64) -> String {
    format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
}

/// Seconds with three decimals, for log line offsets (`0.123`).
pub fn secs3(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// A byte count in decimal units with three significant digits (`95B`,
/// `1.05kB`, `2.81MB`, `123MB`), the way docker prints image sizes
/// (`docker images`) and BuildKit prints transfers.
pub fn size(bytes: u64) -> String {
    rbuild::format_size_in(bytes, rbuild::SizeUnits::Decimal)
}

/// Shortens `sha256:<64 hex>` digests inside `s` to 12 hex digits, for the
/// live view where columns are scarce.
pub fn short_digests(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find("sha256:") {
        let (before, after) = rest.split_at(pos + "sha256:".len());
        out.push_str(before);
        let hex_len = after.bytes().take_while(u8::is_ascii_hexdigit).count();
        if hex_len == 64 {
            out.push_str(&after[..12]);
            rest = &after[64..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_line_removes_escapes_and_keeps_text() {
        assert_eq!(clean_line("\u{1b}[31mred\u{1b}[0m plain"), "red plain");
        assert_eq!(clean_line("\u{1b}]0;title\u{7}after"), "after");
        assert_eq!(clean_line("\u{1b}]0;title\u{1b}\\after"), "after");
        assert_eq!(clean_line("10%\r50%\r100%"), "100%");
        assert_eq!(clean_line("crlf line\r"), "crlf line");
        assert_eq!(clean_line("bell\u{7} and\u{8} backspace"), "bell and backspace");
        assert_eq!(clean_line("a\tb"), "a\tb");
        assert_eq!(clean_line("cut \u{1b}["), "cut ");
    }

    #[test]
    fn widths_and_truncation() {
        assert_eq!(width("abc"), 3);
        assert_eq!(width("日本"), 4);
        assert_eq!(truncate("日本語", 5), "日本");
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(expand_tabs("a\tb"), "a       b");
    }

    #[test]
    fn sizes_like_docker() {
        assert_eq!(size(95), "95B");
        assert_eq!(size(1050), "1.05kB");
        assert_eq!(size(2_810_000), "2.81MB");
        assert_eq!(size(1_000_000), "1MB");
        assert_eq!(size(15_500), "15.5kB");
        assert_eq!(size(999_999), "1MB");
        assert_eq!(size(123_456_789), "123MB");
        assert_eq!(size(999), "999B");
        assert_eq!(size(1500), "1.5kB");
        assert_eq!(size(12_345_678), "12.3MB");
        assert_eq!(size(2_000_000_000), "2GB");
    }

    #[test]
    fn durations() {
        assert_eq!(secs(1234), "1.2s");
        assert_eq!(secs(0), "0.0s");
        assert_eq!(secs3(1234), "1.234");
        assert_eq!(secs3(5), "0.005");
    }

    #[test]
    fn digests_shortened() {
        let d = format!("pull sha256:{}", "ab".repeat(32));
        assert_eq!(short_digests(&d), "pull sha256:abababababab");
        assert_eq!(short_digests("sha256:xyz"), "sha256:xyz");
    }
}
