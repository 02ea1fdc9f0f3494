//! `--datetime-format`: the strftime subset upstream's `nsq_to_file` knows.
//!
//! Upstream maps a fixed set of `%` directives onto Go's time layout and
//! leaves every other character, unknown directives included, as it is; the
//! time is the local one.

use chrono::{DateTime, TimeZone};

/// The directives upstream converts; anything else after `%` is literal.
const KNOWN: &[char] = &[
    'B', 'b', 'm', 'A', 'a', 'd', 'H', 'I', 'M', 'S', 'Y', 'y', 'p', 'Z', 'z', '%',
];

/// Formats `time` with `format`.
pub fn strftime<Tz: TimeZone>(format: &str, time: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('%', Some(d)) if KNOWN.contains(&d) => {
                chars.next();
                // Each known directive is also one of chrono's, with the
                // same meaning, so the item never fails to format.
                let spec = ['%', d].iter().collect::<String>();
                out.push_str(&time.format(&spec).to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, TimeZone};

    fn at() -> DateTime<FixedOffset> {
        FixedOffset::east_opt(3600)
            .unwrap()
            .with_ymd_and_hms(2024, 2, 9, 15, 4, 5)
            .unwrap()
    }

    #[test]
    fn upstreams_default_format() {
        assert_eq!(strftime("%Y-%m-%d_%H", &at()), "2024-02-09_15");
    }

    #[test]
    fn every_known_directive() {
        assert_eq!(
            strftime("%B %b %A %a %d %I %M %S %y %p %z %%", &at()),
            "February Feb Friday Fri 09 03 04 05 24 PM +0100 %"
        );
    }

    #[test]
    fn unknown_directives_and_a_trailing_percent_stay_literal() {
        assert_eq!(strftime("%Q-%j-%", &at()), "%Q-%j-%");
        assert_eq!(strftime("plain", &at()), "plain");
    }
}
