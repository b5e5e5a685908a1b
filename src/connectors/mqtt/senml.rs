//! SenML (RFC 8428) in JSON: a pack of records, each resolved against the base fields before it
//! (§4.6): base name + name, base time + time (a resolved time below 2^28 is relative to now,
//! §4.5.3), base unit, base value + value, base sum + sum.

use serde_json::{Map, Value};

use super::mapping::{RejectKind, Rejection};

/// Resolved times below this are seconds relative to now (RFC 8428 §4.5.3).
const RELATIVE_LIMIT: f64 = 268_435_456.0;

/// One resolved record.
#[derive(Debug, Clone, PartialEq)]
pub struct SenmlRecord {
    /// The base name in force (`bn`), if any.
    pub base_name: Option<String>,
    /// The record's own name (`n`), possibly empty.
    pub name: String,
    pub value: Option<f64>,
    pub text: Option<String>,
    pub boolean: Option<bool>,
    pub unit: Option<String>,
    /// Microseconds since the epoch.
    pub time_micros: i64,
}

impl SenmlRecord {
    /// The full name: base name followed by name.
    pub fn resolved_name(&self) -> String {
        format!("{}{}", self.base_name.as_deref().unwrap_or(""), self.name)
    }
}

fn wrong(reason: String) -> Rejection {
    Rejection {
        kind: RejectKind::NotSenml,
        reason,
    }
}

fn number(record: &Map<String, Value>, key: &str, index: usize) -> Result<Option<f64>, Rejection> {
    match record.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(other) => Err(Rejection {
            kind: RejectKind::WrongType,
            reason: format!("SenML record {index}: `{key}` must be a number, found {other}"),
        }),
    }
}

fn text(record: &Map<String, Value>, key: &str, index: usize) -> Result<Option<String>, Rejection> {
    match record.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Rejection {
            kind: RejectKind::WrongType,
            reason: format!("SenML record {index}: `{key}` must be a string, found {other}"),
        }),
    }
}

/// Resolve a SenML JSON pack. `now_micros` is the arrival time: the time of records without one,
/// and the origin of relative times.
pub fn resolve(payload: &[u8], now_micros: i64) -> Result<Vec<SenmlRecord>, Rejection> {
    let value: Value = serde_json::from_slice(payload).map_err(|e| Rejection {
        kind: RejectKind::NotJson,
        reason: format!("not JSON: {e}"),
    })?;
    let Value::Array(records) = value else {
        return Err(wrong("not SenML: a pack is a JSON array of records".into()));
    };
    if records.is_empty() {
        return Err(wrong("not SenML: an empty pack".into()));
    }
    let mut base_name: Option<String> = None;
    let mut base_time = 0.0;
    let mut base_unit: Option<String> = None;
    let mut base_value = 0.0;
    let mut base_sum = 0.0;
    let mut out = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let Value::Object(record) = record else {
            return Err(wrong(format!("not SenML: record {index} is not an object")));
        };
        // Labels ending in `_` must be understood (RFC 8428 §4.4); we understand none.
        if let Some(key) = record.keys().find(|k| k.ends_with('_')) {
            return Err(wrong(format!(
                "SenML record {index}: label `{key}` is not supported"
            )));
        }
        if let Some(bn) = text(record, "bn", index)? {
            base_name = Some(bn);
        }
        if let Some(bt) = number(record, "bt", index)? {
            base_time = bt;
        }
        if let Some(bu) = text(record, "bu", index)? {
            base_unit = Some(bu);
        }
        if let Some(bv) = number(record, "bv", index)? {
            base_value = bv;
        }
        if let Some(bs) = number(record, "bs", index)? {
            base_sum = bs;
        }
        if let Some(version) = number(record, "bver", index)? {
            if version > 10.0 {
                return Err(wrong(format!(
                    "SenML record {index}: version {version} is newer than RFC 8428 (10)"
                )));
            }
        }
        let name = text(record, "n", index)?.unwrap_or_default();
        if base_name.as_deref().unwrap_or("").is_empty() && name.is_empty() {
            return Err(Rejection {
                kind: RejectKind::MissingField,
                reason: format!("SenML record {index}: no name (`n` or a base name `bn`)"),
            });
        }
        let v = number(record, "v", index)?;
        let s = number(record, "s", index)?;
        let vs = text(record, "vs", index)?.or(text(record, "vd", index)?);
        let vb = match record.get("vb") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                return Err(Rejection {
                    kind: RejectKind::WrongType,
                    reason: format!(
                        "SenML record {index}: `vb` must be true or false, found {other}"
                    ),
                });
            }
        };
        let value = v.map(|v| base_value + v).or(s.map(|s| base_sum + s));
        if value.is_none() && vs.is_none() && vb.is_none() {
            return Err(Rejection {
                kind: RejectKind::MissingField,
                reason: format!("SenML record {index}: no value (`v`, `vs`, `vb`, `vd` or `s`)"),
            });
        }
        let time = base_time + number(record, "t", index)?.unwrap_or(0.0);
        let time_micros = if time.abs() < RELATIVE_LIMIT {
            now_micros + (time * 1e6) as i64
        } else {
            (time * 1e6) as i64
        };
        out.push(SenmlRecord {
            base_name: base_name.clone(),
            name,
            value,
            text: vs,
            boolean: vb,
            unit: text(record, "u", index)?.or(base_unit.clone()),
            time_micros,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000;

    #[test]
    fn base_fields_resolve_and_carry_over() {
        let pack = br#"[
            {"bn":"urn:dev:ow:10e2073a01080063:","bt":1.276020076e+09,"bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},
            {"n":"current","t":-5,"v":1.2},
            {"n":"current","t":-4,"v":1.3},
            {"bn":"amb-1/","bt":0,"n":"ok","vb":true},
            {"n":"note","vs":"pulizia","t":10}
        ]"#;
        let records = resolve(pack, NOW).unwrap();
        assert_eq!(records.len(), 5);
        assert_eq!(
            records[0].resolved_name(),
            "urn:dev:ow:10e2073a01080063:voltage"
        );
        assert_eq!(
            (records[0].value, records[0].unit.as_deref()),
            (Some(120.1), Some("V"))
        );
        assert_eq!(records[0].time_micros, 1_276_020_076_000_000);
        // Base unit and base time apply to the records that follow.
        assert_eq!(
            (records[1].unit.as_deref(), records[1].time_micros),
            (Some("A"), 1_276_020_071_000_000)
        );
        assert_eq!(records[2].value, Some(1.3));
        // A new base name; base time 0: times are relative to now.
        assert_eq!(records[3].resolved_name(), "amb-1/ok");
        assert_eq!(
            (records[3].boolean, records[3].time_micros),
            (Some(true), NOW)
        );
        assert_eq!(
            (records[4].text.as_deref(), records[4].time_micros),
            (Some("pulizia"), NOW + 10_000_000)
        );
    }

    #[test]
    fn base_value_and_sum() {
        let records = resolve(
            br#"[{"bn":"x/","bv":10,"n":"a","v":2.5},{"n":"b","bs":100,"s":1}]"#,
            NOW,
        )
        .unwrap();
        assert_eq!(records[0].value, Some(12.5));
        assert_eq!(records[1].value, Some(101.0));
    }

    #[test]
    fn malformed_packs_say_why() {
        let reason = |pack: &[u8]| resolve(pack, NOW).unwrap_err();
        assert_eq!(reason(b"{\"n\":\"x\",\"v\":1}").kind, RejectKind::NotSenml);
        assert_eq!(reason(b"[]").kind, RejectKind::NotSenml);
        assert_eq!(reason(b"temp=21").kind, RejectKind::NotJson);
        let no_value = reason(br#"[{"n":"temp"}]"#);
        assert_eq!(no_value.kind, RejectKind::MissingField);
        assert!(no_value.reason.contains("no value"), "{}", no_value.reason);
        assert_eq!(reason(br#"[{"v":1}]"#).kind, RejectKind::MissingField);
        let wrong_type = reason(br#"[{"n":"temp","v":"21"}]"#);
        assert_eq!(wrong_type.kind, RejectKind::WrongType);
        assert!(
            wrong_type.reason.contains("`v` must be a number"),
            "{}",
            wrong_type.reason
        );
        assert!(
            reason(br#"[{"n":"t","v":1,"foo_":2}]"#)
                .reason
                .contains("`foo_` is not supported")
        );
    }
}
