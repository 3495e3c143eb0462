//! A strict parser for the Prometheus text exposition format (0.0.4), so a test can say
//! "/metrics parses" and mean it.

use std::collections::{BTreeMap, HashMap, HashSet};

/// One sample: metric name, labels (sorted), value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition: families' types and help, and every sample.
#[derive(Debug, Default)]
pub struct Exposition {
    pub types: HashMap<String, String>,
    pub help: HashMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of `name` with exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ if s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) && !s.is_empty() => {
            s.parse().map_err(|_| format!("'{s}' is not a number"))
        }
        _ => Err(format!("'{s}' is not a number")),
    }
}

/// The family a sample belongs to (histogram and summary suffixes stripped when the
/// base name was declared with that type).
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && matches!(
                types.get(base).map(String::as_str),
                Some("histogram" | "summary")
            )
        {
            return base;
        }
    }
    name
}

/// Parses `text`, refusing anything the format does not allow: bad names, bad escapes,
/// a TYPE after its samples or twice, interleaved families, duplicate series, a missing
/// final newline.
pub fn parse(text: &str) -> Result<Exposition, String> {
    if !text.ends_with('\n') {
        return Err("the exposition does not end with a newline".into());
    }
    let mut out = Exposition::default();
    let mut seen_series = HashSet::new();
    let mut families_done: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut with_samples: HashSet<String> = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let err = |m: String| format!("line {n}: {m}: {line:?}");
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            let keyword = parts.next().unwrap_or("");
            if keyword != "HELP" && keyword != "TYPE" {
                continue; // a plain comment
            }
            let name = parts.next().ok_or_else(|| err("no metric name".into()))?;
            if !is_metric_name(name) {
                return Err(err(format!("bad metric name '{name}'")));
            }
            let rest = parts.next().unwrap_or("");
            if keyword == "TYPE" {
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&rest) {
                    return Err(err(format!("bad type '{rest}'")));
                }
                if out.types.insert(name.to_owned(), rest.to_owned()).is_some() {
                    return Err(err("second TYPE for the family".into()));
                }
                if with_samples.contains(name) {
                    return Err(err("TYPE after the family's samples".into()));
                }
            } else {
                let mut escaped = false;
                for c in rest.chars() {
                    if escaped {
                        if c != '\\' && c != 'n' {
                            return Err(err(format!("bad escape \\{c} in HELP")));
                        }
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    }
                }
                if out.help.insert(name.to_owned(), rest.to_owned()).is_some() {
                    return Err(err("second HELP for the family".into()));
                }
            }
            continue;
        }
        // A sample: name, optional {labels}, value, optional timestamp.
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(err(format!("bad metric name '{name}'")));
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(after) = rest.strip_prefix('{') {
            let mut chars = after.char_indices().peekable();
            let consumed;
            loop {
                // label name
                let start = match chars.peek() {
                    Some((_, '}')) => {
                        let (j, _) = chars.next().unwrap();
                        consumed = Some(j + 1);
                        break;
                    }
                    Some((j, _)) => *j,
                    None => return Err(err("unterminated labels".into())),
                };
                let mut eq = None;
                for (j, c) in chars.by_ref() {
                    if c == '=' {
                        eq = Some(j);
                        break;
                    }
                }
                let eq = eq.ok_or_else(|| err("label without '='".into()))?;
                let label = &after[start..eq];
                if !is_label_name(label) {
                    return Err(err(format!("bad label name '{label}'")));
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(err("label value not quoted".into()));
                }
                let mut value = String::new();
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            other => return Err(err(format!("bad escape {other:?}"))),
                        },
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\n' => return Err(err("newline in a label value".into())),
                        c => value.push(c),
                    }
                }
                if !closed {
                    return Err(err("unterminated label value".into()));
                }
                if labels.insert(label.to_owned(), value).is_some() {
                    return Err(err(format!("label '{label}' twice")));
                }
                match chars.next() {
                    Some((_, ',')) => {
                        if let Some((j, '}')) = chars.peek().copied() {
                            chars.next();
                            consumed = Some(j + 1);
                            break;
                        }
                    }
                    Some((j, '}')) => {
                        consumed = Some(j + 1);
                        break;
                    }
                    _ => return Err(err("expected ',' or '}' after a label".into())),
                }
            }
            rest = &after[consumed.expect("set on break")..];
        }
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| err("no space before the value".into()))?;
        let mut fields = rest.split(' ');
        let value = parse_value(fields.next().unwrap_or("")).map_err(&err)?;
        if let Some(ts) = fields.next()
            && ts.parse::<i64>().is_err()
        {
            return Err(err(format!("bad timestamp '{ts}'")));
        }
        if fields.next().is_some() {
            return Err(err("trailing fields".into()));
        }
        let family = family_of(name, &out.types).to_owned();
        if current.as_deref() != Some(family.as_str()) {
            if families_done.contains(&family) {
                return Err(err(format!("samples of '{family}' are not together")));
            }
            if let Some(previous) = current.replace(family.clone()) {
                families_done.insert(previous);
            }
        }
        with_samples.insert(family.clone());
        if out.types.get(&family).map(String::as_str) == Some("counter") && value < 0.0 {
            return Err(err("a negative counter".into()));
        }
        if !seen_series.insert((name.to_owned(), labels.clone())) {
            return Err(err("the same series twice".into()));
        }
        out.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(out)
}

#[test]
fn the_parser_refuses_what_the_format_does_not_allow() {
    assert!(parse("# TYPE a counter\na 1\n").is_ok());
    assert!(parse("a{b=\"x\\\"y\",c=\"\"} 1 1700000000\n").is_ok());
    for bad in [
        "a 1",                                     // no final newline
        "a 1\n# TYPE a counter\n",                 // TYPE after samples
        "a 1\nb 2\na 3\n",                         // interleaved
        "a 1\na 2\n",                              // duplicate series
        "a{b=x} 1\n",                              // unquoted
        "a{b=\"\\t\"} 1\n",                        // bad escape
        "a{1b=\"x\"} 1\n",                         // bad label name
        "1a 1\n",                                  // bad metric name
        "a one\n",                                 // bad value
        "# TYPE a counter\n# TYPE a gauge\na 1\n", // TYPE twice
        "# TYPE a counter\na -1\n",                // negative counter
        "a  1\n",                                  // two spaces
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}
