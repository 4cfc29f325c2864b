//! Replay of recorded data from CSV: `ts,device,key,value` rows (ts in ms),
//! sent at the original pace or scaled by a speed factor.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::generator::{Message, Reading};

/// A recording: devices in order of first appearance, and messages in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct Recording {
    /// Device names.
    pub devices: Vec<String>,
    /// (ms after the first row, message), oldest first.
    pub messages: Vec<(i64, Message)>,
}

/// A CSV error, with its line.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("line {line}: {message}")]
pub struct ReplayError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn value(raw: &str) -> Value {
    if let Ok(i) = raw.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(f) = raw.parse::<f64>() {
        if f.is_finite() {
            return serde_json::Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or(Value::Null);
        }
    }
    match raw {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        s => Value::String(s.trim_matches('"').to_string()),
    }
}

/// Parses a CSV recording. A header line (`ts,device,key,value`) is optional.
/// Rows with the same device and timestamp become one reading.
pub fn parse(text: &str) -> Result<Recording, ReplayError> {
    let mut devices: Vec<String> = Vec::new();
    let mut rows: BTreeMap<(i64, usize), BTreeMap<String, Value>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty()
            || line.starts_with('#')
            || (i == 0 && line.to_ascii_lowercase().starts_with("ts,"))
        {
            continue;
        }
        let cols: Vec<&str> = line.splitn(4, ',').map(str::trim).collect();
        if cols.len() != 4 {
            return Err(ReplayError {
                line: line_no,
                message: "expected 4 columns: ts,device,key,value".into(),
            });
        }
        let ts: i64 = cols[0].parse().map_err(|_| ReplayError {
            line: line_no,
            message: format!("ts {:?} is not milliseconds", cols[0]),
        })?;
        if cols[1].is_empty() || cols[2].is_empty() {
            return Err(ReplayError {
                line: line_no,
                message: "device and key must not be empty".into(),
            });
        }
        let d = match devices.iter().position(|n| n == cols[1]) {
            Some(d) => d,
            None => {
                devices.push(cols[1].to_string());
                devices.len() - 1
            }
        };
        rows.entry((ts, d))
            .or_default()
            .insert(cols[2].to_string(), value(cols[3]));
    }
    let first = rows.keys().next().map(|(ts, _)| *ts).unwrap_or(0);
    let messages = rows
        .into_iter()
        .map(|((ts, device), values)| {
            (
                ts - first,
                Message {
                    device,
                    readings: vec![Reading { ts, values }],
                },
            )
        })
        .collect();
    Ok(Recording { devices, messages })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_group_by_device_and_time_and_errors_name_the_line() {
        let r = parse(
            "ts,device,key,value\n1000,a,t,21.5\n1000,a,on,true\n2000,b,mode,eco\n1500,a,t,22\n",
        )
        .unwrap();
        assert_eq!(r.devices, vec!["a", "b"]);
        let offsets: Vec<i64> = r.messages.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, vec![0, 500, 1000]);
        assert_eq!(r.messages[0].1.readings[0].values.len(), 2);
        assert_eq!(r.messages[1].1.readings[0].values["t"], Value::from(22));
        assert_eq!(parse("1000,a,t\n").unwrap_err().line, 1);
        assert_eq!(
            parse("1000,a,t,1\nnoon,a,t,2\n").unwrap_err(),
            ReplayError {
                line: 2,
                message: "ts \"noon\" is not milliseconds".into()
            }
        );
    }
}
