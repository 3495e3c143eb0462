//! The send schedule: a crontab expression, read the way crontab reads it.

use chrono::TimeZone as _;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use std::fmt;

/// A crontab expression of 5 fields (`min hour day month weekday`) or 6 with a leading
/// seconds field.
///
/// Read as crontab(5) reads it: weekdays 0–7 with both 0 and 7 meaning Sunday, names
/// (`MON`, `JAN`) in any case, and when both the day of the month and the weekday are
/// restricted a day matching *either* one fires (`0 10 1 * MON` is the 1st and every
/// Monday). The `croner` crate implements that rule; each field is checked here first so
/// an error names the operator's own field and its limits.
#[derive(Clone)]
pub struct SendSchedule {
    expr: String,
    schedule: Cron,
}

/// One crontab field: its name in errors, its limits and the names it accepts.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The first name's number.
    names_from: u32,
}

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    names_from: 0,
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    names_from: 0,
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    names_from: 0,
};
const DAY: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    names_from: 0,
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
    names_from: 1,
};
const WEEKDAY: Field = Field {
    name: "weekday",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    names_from: 0,
};

/// How far ahead a schedule must fire at least once: long enough for 29 February.
const MUST_FIRE_WITHIN_YEARS: i32 = 9;

impl SendSchedule {
    /// Parses a crontab expression; the error says what is wrong in crontab's terms,
    /// quoting the expression as written.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let expr = expr.trim();
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let layout: &[&Field] = match fields.len() {
            5 => &[&MINUTE, &HOUR, &DAY, &MONTH, &WEEKDAY],
            6 => &[&SECOND, &MINUTE, &HOUR, &DAY, &MONTH, &WEEKDAY],
            n => {
                return Err(format!(
                    "'{expr}' has {n} fields; write 5 (minute hour day month weekday) \
                     or 6 (second minute hour day month weekday)"
                ));
            }
        };
        for (text, field) in fields.iter().zip(layout) {
            check_field(text, field)
                .map_err(|e| format!("'{expr}': the {} field '{text}' {e}", field.name))?;
        }
        let schedule = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| format!("'{expr}' is not a valid crontab expression: {e}"))?;
        let parsed = Self {
            expr: expr.to_owned(),
            schedule,
        };
        // A schedule that can never fire (31 February) would leave the daemon idle for
        // good without a word: refuse it while the operator is looking.
        let start = chrono::Utc
            .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
            .single()
            .expect("a valid date");
        let fires = parsed
            .after(&start)
            .next()
            .is_some_and(|t| t < start + chrono::Months::new(12 * MUST_FIRE_WITHIN_YEARS as u32));
        if !fires {
            return Err(format!(
                "'{expr}' never fires: no date matches it (is the day beyond the end of the month?)"
            ));
        }
        Ok(parsed)
    }

    /// The expression as the operator wrote it.
    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// The id of the next issue after `now`: the date, in `tz`, of the next slot (today
    /// if the schedule has no future slot).
    pub fn next_issue_id(
        &self,
        tz: chrono_tz::Tz,
        now: chrono::DateTime<chrono::Utc>,
    ) -> super::IssueId {
        let local = now.with_timezone(&tz);
        let slot = self.after(&local).next().unwrap_or(local);
        super::IssueId::new(slot.date_naive())
    }

    /// The slots strictly after `after`, in `tz`.
    pub fn after<'a, Tz: chrono::TimeZone + 'a>(
        &'a self,
        after: &chrono::DateTime<Tz>,
    ) -> impl Iterator<Item = chrono::DateTime<Tz>> + 'a {
        self.schedule.iter_after(after.clone())
    }
}

impl fmt::Debug for SendSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SendSchedule({:?})", self.expr)
    }
}

/// `L`, `LW`, `15W`, `5L`, `MON#2`, `?`: forms beyond crontab(5) that the parser knows.
fn is_extension(item: &str) -> bool {
    let upper = item.to_ascii_uppercase();
    let digits_then = |suffix: char| {
        upper.len() > 1
            && upper.ends_with(suffix)
            && upper[..upper.len() - 1].chars().all(|c| c.is_ascii_digit())
    };
    upper.contains(['#', '?'])
        || upper == "L"
        || upper == "LW"
        || upper.starts_with("L-")
        || digits_then('L')
        || digits_then('W')
}

/// Checks one field's numbers and names against the field's limits. Items using the
/// extensions `L`, `W`, `#` and `?` are left to the parser.
fn check_field(text: &str, field: &Field) -> Result<(), String> {
    let limits = || {
        let mut s = format!("({}s are {}-{}", field.name, field.min, field.max);
        if field.name == "weekday" {
            s.push_str(", 0 and 7 are Sunday");
        }
        if let (Some(first), Some(last)) = (field.names.first(), field.names.last()) {
            s.push_str(&format!(", or {first}-{last}"));
        }
        s.push(')');
        s
    };
    let value = |v: &str| -> Result<u32, String> {
        if let Ok(n) = v.parse::<u32>() {
            if n < field.min || n > field.max {
                return Err(format!("has {n}, which is out of range {}", limits()));
            }
            return Ok(n);
        }
        match field
            .names
            .iter()
            .position(|name| name.eq_ignore_ascii_case(v))
        {
            Some(i) => Ok(i as u32 + field.names_from),
            None => Err(format!("has '{v}', which is not a number {}", limits())),
        }
    };
    for item in text.split(',') {
        if is_extension(item) {
            continue;
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step
            && step.parse::<u32>().ok().filter(|n| *n > 0).is_none()
        {
            return Err(format!(
                "has the step '/{step}', which is not a positive number"
            ));
        }
        if range == "*" {
            continue;
        }
        if range.is_empty() {
            return Err(format!("has an empty item in '{item}'"));
        }
        match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (value(a)?, value(b)?);
                if a > b {
                    return Err(format!("has the range '{range}', which runs backwards"));
                }
            }
            None => {
                value(range)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Weekday};

    fn next_weekday(expr: &str) -> Weekday {
        let s = SendSchedule::parse(expr).unwrap();
        let start = chrono::Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
        s.after(&start).next().unwrap().weekday()
    }

    #[test]
    fn five_fields_read_as_crontab() {
        assert_eq!(next_weekday("0 9 * * 1"), Weekday::Mon);
        assert_eq!(next_weekday("0 9 * * 0"), Weekday::Sun);
        assert_eq!(next_weekday("0 9 * * 7"), Weekday::Sun);
        assert_eq!(next_weekday("0 9 * * Mon"), Weekday::Mon);
        assert_eq!(next_weekday("30 9 * * 5-7"), Weekday::Fri);
        assert_eq!(next_weekday("0 9 * * 6,0"), Weekday::Sat);
    }

    #[test]
    fn six_fields_have_seconds() {
        let s = SendSchedule::parse("30 0 10 1 * *").unwrap();
        let start = chrono::Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
        let next = s.after(&start).next().unwrap();
        assert_eq!(
            next,
            chrono::Utc
                .with_ymd_and_hms(2026, 12, 1, 10, 0, 30)
                .unwrap()
        );
    }

    #[test]
    fn errors_are_in_crontab_terms() {
        assert!(
            SendSchedule::parse("0 9 * *")
                .unwrap_err()
                .contains("4 fields")
        );
        assert!(
            SendSchedule::parse("0 9 * * 8")
                .unwrap_err()
                .contains("weekday")
        );
        let err = SendSchedule::parse("0 25 * * *").unwrap_err();
        assert!(err.contains("the hour field '25'"), "{err}");
        assert!(err.contains("0-23"), "{err}");
        let err = SendSchedule::parse("0 10 * FOO *").unwrap_err();
        assert!(err.contains("JAN-DEC"), "{err}");
        assert!(SendSchedule::parse("0 10 * * MON-FRI").is_ok());
        assert!(SendSchedule::parse("*/15 10 L * *").is_ok());
        assert!(
            SendSchedule::parse("0 10 29 2 *").is_ok(),
            "fires in leap years"
        );
        assert!(
            SendSchedule::parse("0 10 30 2 *")
                .unwrap_err()
                .contains("never fires")
        );
    }
}
