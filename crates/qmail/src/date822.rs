//! Dates as qmail writes them: always UTC, written `-0000`, no weekday
//! (`3 Feb 2024 09:05:07 -0000`), in Received, Date and bounce lines.

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Broken-down UTC time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub min: u32,
    pub sec: u32,
}

impl Utc {
    /// From seconds since the epoch (Howard Hinnant's days-to-civil algorithm).
    pub fn from_unix(t: i64) -> Utc {
        let days = t.div_euclid(86400);
        let secs = t.rem_euclid(86400) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Utc {
            year,
            month,
            day,
            hour: secs / 3600,
            min: secs / 60 % 60,
            sec: secs % 60,
        }
    }

    pub fn now() -> Utc {
        Utc::from_unix(now())
    }

    /// `3 Feb 2024 09:05:07 -0000`
    pub fn rfc822(&self) -> String {
        format!(
            "{} {} {} {:02}:{:02}:{:02} -0000",
            self.day,
            MONTHS[self.month as usize - 1],
            self.year,
            self.hour,
            self.min,
            self.sec
        )
    }

    /// `20240203090507`, the stamp in qmail-inject's Message-IDs.
    pub fn compact(&self) -> String {
        format!(
            "{}{:02}{:02}{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.min, self.sec
        )
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// qmail's myctime: `Www Mmm DD HH:MM:SS YYYY\n` in UTC, the day zero-padded.
pub fn myctime(t: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let u = Utc::from_unix(t);
    // 1 Jan 1970 was a Thursday.
    let wday = (t.div_euclid(86400) + 4).rem_euclid(7) as usize;
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} {}\n",
        DAYS[wday],
        MONTHS[u.month as usize - 1],
        u.day,
        u.hour,
        u.min,
        u.sec,
        u.year
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_qmail() {
        assert_eq!(Utc::from_unix(0).rfc822(), "1 Jan 1970 00:00:00 -0000");
        assert_eq!(Utc::from_unix(1_706_951_107).rfc822(), "3 Feb 2024 09:05:07 -0000");
        assert_eq!(Utc::from_unix(1_706_951_107).compact(), "20240203090507");
        // 29 Feb of a leap year, and the last second of a century year that is not one.
        assert_eq!(Utc::from_unix(951_782_400).rfc822(), "29 Feb 2000 00:00:00 -0000");
        assert_eq!(Utc::from_unix(4_133_980_799).rfc822(), "31 Dec 2100 23:59:59 -0000");
    }

    #[test]
    fn agrees_with_the_calendar_every_day_for_400_years() {
        let mut t = 0i64;
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        while y < 2370 {
            let u = Utc::from_unix(t);
            assert_eq!((u.year, u.month, u.day), (y, m, d));
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m as usize - 1];
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
            t += 86400;
        }
    }
}
