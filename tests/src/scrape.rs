//! Reading a broker's HTTP listener the way a monitoring system does: a plain HTTP/1.1 GET, and a parser of the
//! Prometheus/OpenMetrics text exposition into samples, so tests assert on values by name and labels rather
//! than by matching lines.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// An HTTP answer: status code and body.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub body: String,
}

/// `GET path` from `address` (`host:port`), `Connection: close`; handles a chunked body.
///
/// # Errors
///
/// When the connection fails or the answer is not HTTP.
pub fn http_get(address: &str, path: &str) -> Result<HttpAnswer, String> {
    let mut stream = TcpStream::connect(address).map_err(|e| format!("connect {address}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(20))).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| format!("read from {address}: {e}"))?;
    let text = String::from_utf8(raw).map_err(|e| format!("answer is not UTF-8: {e}"))?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no header end in {text:?}"))?;
    let status =
        head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("no status in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(body)? } else { body.to_string() };
    Ok(HttpAnswer { status, body })
}

fn dechunk(mut rest: &str) -> Result<String, String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or("truncated chunk size")?;
        let size = usize::from_str_radix(size.trim(), 16).map_err(|e| format!("bad chunk size {size:?}: {e}"))?;
        if size == 0 {
            return Ok(body);
        }
        body.push_str(after.get(..size).ok_or("truncated chunk")?);
        rest = after.get(size + 2..).ok_or("truncated chunk end")?;
    }
}

/// Parses an exposition: `#` lines are skipped, every other line must be a sample.
///
/// # Errors
///
/// On a line that is not a well-formed sample.
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        samples.push(parse_sample(line).map_err(|e| format!("{e} in line {line:?}"))?);
    }
    Ok(samples)
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = line[..name_end].to_string();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == '}' {
                end = Some(i);
                break;
            }
            if c == ',' {
                continue;
            }
            // key="value"
            let key_start = i;
            let mut key_end = i;
            for (j, k) in chars.by_ref() {
                if k == '=' {
                    key_end = j;
                    break;
                }
            }
            let key = inner[key_start..key_end].to_string();
            if chars.next().map(|(_, q)| q) != Some('"') {
                return Err(format!("label {key} has no quoted value"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, other)) => value.push(other),
                        None => return Err("dangling escape".into()),
                    },
                    Some((_, '"')) => break,
                    Some((_, other)) => value.push(other),
                    None => return Err("unterminated label value".into()),
                }
            }
            labels.insert(key, value);
        }
        let end = end.ok_or("unterminated label set")?;
        rest = &inner[end + 1..];
    }
    let value_text = rest.split_whitespace().next().ok_or("no value")?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|e| format!("bad value {v:?}: {e}"))?,
    };
    Ok(Sample { name, labels, value })
}

/// The samples named `name` whose labels include every pair of `with`.
pub fn select<'a>(samples: &'a [Sample], name: &str, with: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name && with.iter().all(|(k, v)| s.labels.get(*k).is_some_and(|have| have == v)))
        .collect()
}

/// The sum of [`select`]'s values (0 when none match).
pub fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    select(samples, name, with).iter().map(|s| s.value).sum()
}

/// `GET /metrics` from `address`, parsed.
///
/// # Errors
///
/// When the listener does not answer 200 or the exposition does not parse.
pub fn scrape(address: &str) -> Result<Vec<Sample>, String> {
    let answer = http_get(address, "/metrics")?;
    if answer.status != 200 {
        return Err(format!("/metrics answered {}: {}", answer.status, answer.body));
    }
    if !answer.body.trim_end().ends_with("# EOF") {
        return Err("the exposition does not end with # EOF".into());
    }
    parse_exposition(&answer.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_labels_escapes_and_special_values_parse() {
        let text = "# HELP x_total help\n# TYPE x_total counter\nx_total{api=\"produce\",error=\"none\"} 3\n\
                    y 1.5e3\nz_bucket{le=\"+Inf\",q=\"a\\\"b\\\\c\"} 7\nw +Inf\n# EOF\n";
        let samples = parse_exposition(text).unwrap();
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[0].labels["api"], "produce");
        assert_eq!(samples[0].value, 3.0);
        assert_eq!(samples[1].value, 1500.0);
        assert_eq!(samples[2].labels["q"], "a\"b\\c");
        assert_eq!(samples[3].value, f64::INFINITY);
        assert_eq!(sum(&samples, "x_total", &[("api", "produce")]), 3.0);
        assert!(select(&samples, "x_total", &[("api", "fetch")]).is_empty());
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in ["x{a=\"1\" 2", "x{a=1} 2", "x", "x{a=\"1\"} notanumber", "bad-name 1"] {
            assert!(parse_exposition(bad).is_err(), "{bad} parsed");
        }
    }
}
