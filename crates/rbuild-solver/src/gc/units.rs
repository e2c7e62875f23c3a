//! Sizes and durations as users write them (`10GB`, `24h`), with Docker's
//! meanings: size suffixes are binary (`1KB` = 1024 bytes, as
//! `--keep-storage` reads them in buildx), durations are Go-style
//! (`1h30m`), plus `d` for days.

/// A size or duration that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitError {
    #[error(
        "invalid size `{0}`\nhint: a number with an optional unit: 512MB, 10GB, 1.5GiB, 1000000"
    )]
    Size(String),
    #[error("invalid duration `{0}`\nhint: a Go-style duration such as 24h, 90m, 1h30m or 7d")]
    Duration(String),
}

/// Parses a size in bytes (`10GB`, `1.5g`, `512MiB`, `100`).
pub fn parse_size(input: &str) -> Result<u64, UnitError> {
    let err = || UnitError::Size(input.to_string());
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return Err(err());
    }
    let value: f64 = number.parse().map_err(|_| err())?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(err()),
    };
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes as u64)
}

/// Parses a duration into seconds (`24h`, `1h30m`, `45s`, `7d`).
pub fn parse_duration(input: &str) -> Result<i64, UnitError> {
    let err = || UnitError::Duration(input.to_string());
    let s = input.trim();
    if s.is_empty() {
        return Err(err());
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let (number, after) = rest.split_at(split);
        let value: f64 = number.parse().map_err(|_| err())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(err()),
        };
        total += value * scale;
        rest = next;
    }
    if !total.is_finite() || total >= i64::MAX as f64 {
        return Err(err());
    }
    Ok(total as i64)
}

/// How a size is printed for people. Both styles print `kB`/`MB`/`GB` the
/// way Docker does, and differ where Docker's own commands differ: image
/// and transfer sizes (`docker images`, BuildKit's progress) count in
/// thousands, disk usage (`buildctl du`, and our `--keep-storage` parser)
/// in 1024s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeUnits {
    /// Powers of 1000 with three significant digits: `95B`, `1.05kB`,
    /// `12.3MB`, `123MB`.
    Decimal,
    /// Powers of 1024 with up to three decimals: `1.5kB`, `2.004MB`.
    Binary,
}

/// A size for people in the given style (trailing zeros and a bare `.` are
/// dropped: `2GB`, not `2.000GB`).
pub fn format_size_in(bytes: u64, units: SizeUnits) -> String {
    const NAMES: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    // Decimal moves to the next unit as soon as three digits would round
    // to 1000 (`999.5kB` is `1MB`); binary only at a full 1024.
    let (base, next_at, largest) = match units {
        SizeUnits::Decimal => (1000.0, 999.5, 6),
        SizeUnits::Binary => (1024.0, 1024.0, 5),
    };
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= next_at && unit < largest {
        value /= base;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes}B");
    }
    let decimals = match units {
        SizeUnits::Decimal if value < 9.995 => 2,
        SizeUnits::Decimal if value < 99.95 => 1,
        SizeUnits::Decimal => 0,
        SizeUnits::Binary => 3,
    };
    let number = format!("{value:.decimals$}");
    let number = if decimals > 0 {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        &number
    };
    format!("{number}{}", NAMES[unit])
}

/// A size for people in binary units (see [`SizeUnits::Binary`]): how
/// `du` and `prune` report cache usage.
pub fn format_size(bytes: u64) -> String {
    format_size_in(bytes, SizeUnits::Binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("1KB"), Ok(1024));
        assert_eq!(parse_size("10GB"), Ok(10 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size(" 2 MB "), Ok(2 << 20));
        for bad in ["", "GB", "10XB", "-1", "1e99TB", "1..2"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_are_go_style() {
        assert_eq!(parse_duration("24h"), Ok(86400));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("7d"), Ok(7 * 86400));
        assert_eq!(parse_duration("1500ms"), Ok(1));
        for bad in ["", "24", "h", "10y", "1h-2m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_print_short() {
        assert_eq!(format_size(512), "512B");
        assert_eq!(format_size(1536), "1.5kB");
        assert_eq!(format_size(10 << 30), "10GB");
        assert_eq!(format_size(1_234_567), "1.177MB");
        assert_eq!(format_size(3 << 50), "3PB");
        assert_eq!(format_size(u64::MAX), "16384PB");
    }

    #[test]
    fn decimal_sizes_read_like_docker() {
        let d = |n| format_size_in(n, SizeUnits::Decimal);
        assert_eq!(d(0), "0B");
        assert_eq!(d(999), "999B");
        assert_eq!(d(1000), "1kB");
        assert_eq!(d(1050), "1.05kB");
        assert_eq!(d(15_500), "15.5kB");
        assert_eq!(d(999_999), "1MB");
        assert_eq!(d(12_345_678), "12.3MB");
        assert_eq!(d(123_456_789), "123MB");
        assert_eq!(d(2_000_000_000), "2GB");
        assert_eq!(d(u64::MAX), "18.4EB");
    }
}
