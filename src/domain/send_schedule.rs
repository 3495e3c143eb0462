//! The send schedule: a crontab expression, read the way crontab reads it.

use std::fmt;
use std::str::FromStr;

/// A crontab expression of 5 fields (`min hour day month weekday`) or 6 with a leading
/// seconds field.
///
/// The `cron` crate wants the seconds field and numbers weekdays 1–7 from Sunday, while
/// crontab numbers them 0–7 with both 0 and 7 meaning Sunday. We accept crontab's form and
/// translate, so `0 9 * * 1` means Monday here as it does in every crontab.
#[derive(Clone)]
pub struct SendSchedule {
    expr: String,
    schedule: cron::Schedule,
}

impl SendSchedule {
    /// Parses a crontab expression; the error says what is wrong in crontab's terms.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let mut full: Vec<String> = match fields.len() {
            5 => std::iter::once("0")
                .chain(fields.iter().copied())
                .map(str::to_owned)
                .collect(),
            6 => fields.iter().map(|f| (*f).to_owned()).collect(),
            n => {
                return Err(format!(
                    "'{expr}' has {n} fields; write 5 (minute hour day month weekday) \
                     or 6 (second minute hour day month weekday)"
                ));
            }
        };
        full[5] = crontab_weekdays(&full[5])
            .map_err(|e| format!("'{expr}': weekday field '{}': {e}", full[5]))?;
        let schedule = cron::Schedule::from_str(&full.join(" "))
            .map_err(|e| format!("'{expr}' is not a valid crontab expression: {e}"))?;
        Ok(Self {
            expr: expr.trim().to_owned(),
            schedule,
        })
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
        self.schedule.after(after)
    }
}

impl fmt::Debug for SendSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SendSchedule({:?})", self.expr)
    }
}

/// Rewrites crontab weekday numbers (0–7, Sunday = 0 or 7) as names, which the `cron`
/// crate reads unambiguously. Ranges that wrap past Sunday become lists.
fn crontab_weekdays(field: &str) -> Result<String, String> {
    const NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let number = |s: &str| -> Result<Option<usize>, String> {
        if s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty() {
            let n: usize = s.parse().map_err(|_| format!("'{s}' is not a weekday"))?;
            if n > 7 {
                return Err(format!("{n} is not a weekday (0-7, 0 and 7 are Sunday)"));
            }
            Ok(Some(n % 7))
        } else {
            Ok(None)
        }
    };
    let mut out = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let step_n: usize = match step {
            Some(s) => s
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("step '{s}' is not a positive number"))?,
            None => 1,
        };
        match range.split_once('-') {
            Some((a, b)) => match (number(a)?, number(b)?) {
                (Some(a), Some(b_raw)) => {
                    // 7 at the end of a range is the Sunday after Saturday.
                    let b = if b == "7" { 7 } else { b_raw };
                    if a > b {
                        return Err(format!("range '{range}' runs backwards"));
                    }
                    let days: Vec<&str> = (a..=b).step_by(step_n).map(|d| NAMES[d % 7]).collect();
                    out.push(days.join(","));
                }
                (None, None) => out.push(item.to_owned()),
                _ => return Err(format!("range '{range}' mixes numbers and names")),
            },
            None => match number(range)? {
                Some(d) if step.is_none() => out.push(NAMES[d].to_owned()),
                Some(d) => {
                    let days: Vec<&str> = (d..7).step_by(step_n).map(|d| NAMES[d]).collect();
                    out.push(days.join(","));
                }
                None => out.push(item.to_owned()),
            },
        }
    }
    Ok(out.join(","))
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
        assert!(SendSchedule::parse("0 25 * * *").is_err());
    }
}
