//! When and how long to wait before trying a request again.
//!
//! Registries shed load with 429 and 503 and restart behind load balancers;
//! a build that fails because of one such reply is a bad experience, a build
//! that hammers a struggling registry is worse. So: exponential backoff with
//! jitter, the server's `Retry-After` honoured (up to a cap), and a bounded
//! number of attempts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rbuild_oci::config::days_from_civil;

/// Retry limits for one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts per request (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled after each attempt.
    pub base_delay: Duration,
    /// Upper bound for the computed backoff.
    pub max_delay: Duration,
    /// Upper bound for a server-requested `Retry-After`.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    #[must_use]
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait before attempt `attempt + 1` (attempt counts from 1), given
    /// the server's `Retry-After` when it sent one.
    #[must_use]
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.max_retry_after);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max_delay);
        // Up to 25% jitter so parallel uploads do not retry in lockstep.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter = (capped / 4)
            .checked_mul(nanos % 1000)
            .map_or(Duration::ZERO, |d| d / 1000);
        capped.saturating_sub(jitter)
    }
}

/// Parse a `Retry-After` value: delay-seconds or an IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`). A date in the past means "now".
#[must_use]
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = parse_imf_fixdate(v)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(when.saturating_sub(now)))
}

/// Seconds since the epoch for an IMF-fixdate, the only HTTP date format
/// servers are allowed to send.
fn parse_imf_fixdate(v: &str) -> Option<u64> {
    let (_, rest) = v.split_once(", ")?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, mon, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == mon)? as u64
        + 1;
    // Bounded so the day arithmetic below cannot overflow on a hostile
    // header like `Retry-After: Sun, 01 Jan 99999999999999 00:00:00 GMT`.
    let year: i64 = year.parse().ok().filter(|y| (1970..=9999).contains(y))?;
    let hms: Vec<u64> = time
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || *h > 23 || *m > 59 || *s > 60 {
        return None;
    }
    // Month 1..=12 and day 1..=31 were checked above.
    let days = days_from_civil(year, month as u32, day as u32);
    let days = u64::try_from(days).ok()?;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn retry_after_never_panics(s in "\\PC{0,60}") {
            let _ = parse_retry_after(&s);
        }

        #[test]
        fn dates_never_panic(day in 0u64..40, year in any::<i64>(), h in 0u64..30, m in 0u64..70) {
            let _ = parse_retry_after(&format!("Sun, {day:02} Nov {year} {h:02}:{m:02}:00 GMT"));
        }

        #[test]
        fn delay_never_panics(attempt in any::<u32>(), base in any::<u64>(), max in any::<u64>()) {
            let p = RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_nanos(base),
                max_delay: Duration::from_nanos(max),
                max_retry_after: Duration::from_secs(1),
            };
            prop_assert!(p.delay(attempt, None) <= Duration::from_nanos(max));
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        // Past date: retry now.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        for bad in [
            "soon",
            "-1",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "",
        ] {
            assert_eq!(parse_retry_after(bad), None, "{bad}");
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            max_retry_after: Duration::from_secs(2),
        };
        let d1 = p.delay(1, None);
        let d3 = p.delay(3, None);
        let d9 = p.delay(9, None);
        assert!(d1 <= Duration::from_millis(100) && d1 >= Duration::from_millis(75));
        assert!(d3 <= Duration::from_millis(400) && d3 >= Duration::from_millis(300));
        assert!(d9 <= Duration::from_millis(500) && d9 >= Duration::from_millis(375));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(90))),
            Duration::from_secs(2)
        );
    }
}
