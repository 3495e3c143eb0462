//! Human durations in settings: `90s`, `5m`, `24h`, `3d`, `1h30m`.

use std::time::Duration;

/// Parses a duration written as one or more `<number><unit>` pairs, units `ms`, `s`,
/// `m`, `h`, `d`. A bare number is refused: `60` could mean seconds or minutes.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let text = raw.trim();
    if text.is_empty() {
        return Err("is empty; write e.g. \"30s\", \"5m\", \"24h\" or \"3d\"".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "'{raw}' is not a duration like \"30s\", \"5m\" or \"24h\""
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("'{raw}' has a number that is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        rest = &rest[unit_len..];
        let unit_secs: u64 = match unit {
            "ms" => 0,
            "s" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            "d" => 86_400,
            "" => return Err(format!("'{raw}' needs a unit (ms, s, m, h or d)")),
            other => {
                return Err(format!(
                    "'{raw}' has an unknown unit '{other}' (use ms, s, m, h or d)"
                ));
            }
        };
        let part = if unit == "ms" {
            Some(Duration::from_millis(n))
        } else {
            n.checked_mul(unit_secs).map(Duration::from_secs)
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| format!("'{raw}' is too long to be a duration"))?;
    }
    if total > LONGEST {
        return Err(format!(
            "'{raw}' is longer than 100 years; no setting needs that long"
        ));
    }
    Ok(total)
}

/// The longest duration any setting takes. Far beyond any sensible value, and far enough
/// below the limits of date arithmetic that adding it to a date can never overflow.
const LONGEST: Duration = Duration::from_secs(100 * 366 * 86_400);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(259_200)));
    }

    #[test]
    fn refuses_ambiguous_or_unknown() {
        assert!(parse_duration("60").unwrap_err().contains("needs a unit"));
        assert!(
            parse_duration("5 weeks")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn refuses_overflow_instead_of_wrapping() {
        assert!(
            parse_duration("213503982334602d")
                .unwrap_err()
                .contains("too long")
        );
        assert!(parse_duration("18446744073709551615s1s").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
    }
}
