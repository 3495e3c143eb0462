//! Sizes in settings: `1MB`, `512KB`, `10 MB`, or a number of bytes.

/// Parses a size: a whole number with an optional unit `B`, `KB`, `MB` or `GB` (powers
/// of 1024, any case).
pub fn parse_size(raw: &str) -> Result<u64, String> {
    let text = raw.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits == 0 {
        return Err(format!("'{raw}' is not a size like \"1MB\" or \"512KB\""));
    }
    let n: u64 = text[..digits]
        .parse()
        .map_err(|_| format!("'{raw}' is too large"))?;
    let factor: u64 = match text[digits..].trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "K" | "KIB" => 1 << 10,
        "MB" | "M" | "MIB" => 1 << 20,
        "GB" | "G" | "GIB" => 1 << 30,
        other => {
            return Err(format!(
                "'{raw}' has an unknown unit '{other}' (use B, KB, MB or GB)"
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("'{raw}' is too large"))
}

/// `1048576` → `1 MB`, `20480` → `20 KB`, for messages.
pub fn describe_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MB", bytes as f64 / (1u64 << 20) as f64).replace(".0 ", " ")
    } else if bytes >= 1 << 10 {
        format!("{:.1} KB", bytes as f64 / 1024.0).replace(".0 ", " ")
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_size("1MB"), Ok(1 << 20));
        assert_eq!(parse_size("512 kb"), Ok(512 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("MB").is_err());
        assert!(parse_size("1 TB").is_err());
        assert!(parse_size("99999999999999999GB").is_err());
        assert_eq!(describe_size(1 << 20), "1 MB");
        assert_eq!(describe_size(1_572_864), "1.5 MB");
    }
}
