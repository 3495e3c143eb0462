//! `/metrics` read with the `prometheus-parse` crate (not gazette's code): a typed view
//! for tests, and a refusal of any line that crate cannot read as the text format
//! (0.0.4), so "it parses" means something.

use prometheus_parse::{LineInfo, Scrape, Value};
use std::collections::{BTreeMap, HashMap};

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

/// Parses `text`. Refused: a missing final newline, a line the parser ignores (neither
/// HELP, TYPE, a sample nor blank), a sample whose value is not a number, and the same
/// series twice.
pub fn parse(text: &str) -> Result<Exposition, String> {
    if !text.ends_with('\n') {
        return Err("the exposition does not end with a newline".into());
    }
    let mut types = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        match LineInfo::parse(line) {
            LineInfo::Ignored if !line.starts_with('#') || is_help_or_type(line) => {
                return Err(format!("line {n} is not in the text format: {line:?}"));
            }
            LineInfo::Sample { value, .. } => {
                let numeric =
                    matches!(value, "NaN" | "+Inf" | "-Inf") || value.parse::<f64>().is_ok();
                if !numeric {
                    return Err(format!("line {n}: '{value}' is not a number"));
                }
            }
            LineInfo::Type { .. } => {
                let mut words = line.split_whitespace().skip(2);
                if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                    types.insert(name.to_owned(), kind.to_owned());
                }
            }
            _ => {}
        }
    }
    let scrape =
        Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).map_err(|e| e.to_string())?;
    let mut samples = Vec::new();
    for s in scrape.samples {
        let value = match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            Value::Histogram(_) | Value::Summary(_) => continue,
        };
        let labels: BTreeMap<String, String> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if samples
            .iter()
            .any(|o: &Sample| o.name == s.metric && o.labels == labels)
        {
            return Err(format!("{} {labels:?} appears twice", s.metric));
        }
        samples.push(Sample {
            name: s.metric,
            labels,
            value,
        });
    }
    Ok(Exposition {
        types,
        help: scrape.docs,
        samples,
    })
}

/// `/metrics` of the web side on 127.0.0.1:`port`, parsed; `None` while nothing answers
/// there. Blocking (plain HTTP/1.0 over a std socket), for tests without a runtime.
pub fn scrape(port: u16) -> Option<Exposition> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(parse(body).unwrap_or_else(|e| panic!("/metrics: {e}\n{body}")))
}

/// Scrapes 127.0.0.1:`port` every 50 ms until the sample `name` (no labels) reaches
/// `at_least`; returns its value. Panics with `what` after `timeout`.
pub fn wait_for_at_least(
    port: u16,
    name: &str,
    at_least: f64,
    timeout: std::time::Duration,
    what: &str,
) -> f64 {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let value = scrape(port).and_then(|e| e.value(name, &[]));
        if let Some(v) = value
            && v >= at_least
        {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {name} is {value:?} after {timeout:?}, wanted at least {at_least}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn is_help_or_type(line: &str) -> bool {
    line.starts_with("# HELP") || line.starts_with("# TYPE")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_text_is_read_and_malformed_text_refused() {
        let text = "# HELP a_total Things.\n# TYPE a_total counter\na_total 3\n\
                    b{status=\"sent\"} 2\nb{status=\"failed\"} 0\n";
        let e = parse(text).unwrap();
        assert_eq!(e.value("a_total", &[]), Some(3.0));
        assert_eq!(e.value("b", &[("status", "sent")]), Some(2.0));
        assert_eq!(e.types.get("a_total").map(String::as_str), Some("counter"));
        assert!(parse("a_total 3").is_err(), "no final newline");
        assert!(parse("a_total three\n").is_err());
        assert!(parse("a total 3 4 5\n").is_err());
        assert!(parse("a 1\na 2\n").is_err(), "a series twice");
    }
}
