//! SOA serial policy (RFC 1982 arithmetic).

use ferrodns_proto::Serial;

/// How each change moves the SOA serial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SerialPolicy {
    /// Old serial plus one.
    Increment,
    /// `YYYYMMDDnn` for today (UTC) when that is ahead of the old serial,
    /// otherwise old serial plus one, so the serial always moves forward.
    Date,
}

/// The serial after `old` under `policy`, at `now` (microseconds since the epoch).
pub fn next_serial(old: Serial, policy: SerialPolicy, now: i64) -> Serial {
    let bumped = old.plus(1);
    match policy {
        SerialPolicy::Increment => bumped,
        SerialPolicy::Date => {
            let today = Serial(date_serial_base(now));
            if today.is_newer_than(bumped) {
                today
            } else {
                bumped
            }
        }
    }
}

/// The first serial of a new zone under `policy`.
pub fn initial_serial(policy: SerialPolicy, now: i64) -> Serial {
    match policy {
        SerialPolicy::Increment => Serial(1),
        SerialPolicy::Date => Serial(date_serial_base(now)),
    }
}

/// `YYYYMMDD00` for the UTC day of `now`.
fn date_serial_base(now: i64) -> u32 {
    let days = now.div_euclid(86_400_000_000);
    let (year, month, day) = civil_from_days(days);
    (year as u32).saturating_mul(1_000_000).saturating_add(month * 10_000 + day * 100)
}

/// Gregorian date of a day number counted from 1970-01-01 (the well-known
/// era-based conversion; valid for every date we will meet).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;

    #[test]
    fn date_policy_moves_forward_always() {
        // 2026-11-22 is day 20779 after the epoch.
        let now = 20_779 * DAY + 5;
        assert_eq!(date_serial_base(now), 2026112200);
        assert_eq!(next_serial(Serial(7), SerialPolicy::Date, now), Serial(2026112200));
        assert_eq!(next_serial(Serial(2026112200), SerialPolicy::Date, now), Serial(2026112201));
        assert_eq!(next_serial(Serial(2026112299), SerialPolicy::Date, now), Serial(2026112300));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn increment_wraps_by_rfc_1982() {
        assert_eq!(next_serial(Serial(u32::MAX), SerialPolicy::Increment, 0), Serial(0));
    }
}
