//! SenML (RFC 8428) in JSON: a pack of records, each resolved against the base fields before it
//! (§4.6): base name + name, base time + time (a resolved time below 2^28 is relative to now,
//! §4.5.3), base unit, base value + value, base sum + sum. What the RFC forbids is rejected with
//! the rule it breaks: a name outside the §4.5.1 grammar, a version (`bver`) that is not a
//! positive integer or is newer than 10 (§4.4), more than one value field in a record (§4.2),
//! a `vd` that is not base64url (§4.2), a label ending in `_` (§4.4).

use serde_json::{Map, Value};

use super::mapping::{RejectKind, Rejection};

/// Resolved times below this are seconds relative to now (RFC 8428 §4.5.3).
const RELATIVE_LIMIT: f64 = 268_435_456.0;
/// The version of SenML this reader implements (RFC 8428 §4.4).
const VERSION: f64 = 10.0;

/// One resolved record.
#[derive(Debug, Clone, PartialEq)]
pub struct SenmlRecord {
    /// The base name in force (`bn`), if any.
    pub base_name: Option<String>,
    /// The record's own name (`n`), possibly empty: then the name is the base name alone.
    pub name: String,
    pub value: Option<f64>,
    pub text: Option<String>,
    pub boolean: Option<bool>,
    /// A data value (`vd`): base64url text, kept as it came so it is never taken for `vs`.
    pub data: Option<String>,
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

/// RFC 8428 §4.5.1: letters, digits, `-`, `:`, `.`, `/`, `_`, starting with a letter or digit.
fn valid_name(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-:./_".contains(&b))
}

/// RFC 8428 §4.2: `vd` is base64 with the URL-safe alphabet and no padding (RFC 4648 §5).
fn valid_base64url(data: &str) -> bool {
    data.len() % 4 != 1
        && data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
            if version.fract() != 0.0 || version < 1.0 {
                return Err(wrong(format!(
                    "SenML record {index}: version (`bver`) {version} is not a positive integer (RFC 8428 §4.4)"
                )));
            }
            if version > VERSION {
                return Err(wrong(format!(
                    "SenML record {index}: version {version} is newer than RFC 8428 ({VERSION}); such a pack must not be used (§4.4)"
                )));
            }
        }
        let name = text(record, "n", index)?.unwrap_or_default();
        let resolved = format!("{}{name}", base_name.as_deref().unwrap_or(""));
        if resolved.is_empty() {
            return Err(Rejection {
                kind: RejectKind::MissingField,
                reason: format!("SenML record {index}: no name (`n` or a base name `bn`)"),
            });
        }
        if !valid_name(&resolved) {
            return Err(wrong(format!(
                "SenML record {index}: name `{}` breaks RFC 8428 §4.5.1 (letters, digits, `-:./_`, starting with a letter or digit)",
                crate::connectors::truncate_raw(&resolved)
            )));
        }
        let v = number(record, "v", index)?;
        let s = number(record, "s", index)?;
        let vs = text(record, "vs", index)?;
        let vd = text(record, "vd", index)?;
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
        let fields: Vec<&str> = [
            ("v", v.is_some()),
            ("vs", vs.is_some()),
            ("vb", vb.is_some()),
            ("vd", vd.is_some()),
        ]
        .iter()
        .filter(|(_, present)| *present)
        .map(|(key, _)| *key)
        .collect();
        if fields.len() > 1 {
            return Err(wrong(format!(
                "SenML record {index}: {} value fields ({}); RFC 8428 §4.2 allows one",
                fields.len(),
                fields.join(", ")
            )));
        }
        if let Some(data) = &vd {
            if !valid_base64url(data) {
                return Err(wrong(format!(
                    "SenML record {index}: `vd` is not base64url without padding (RFC 8428 §4.2)"
                )));
            }
        }
        let value = v.map(|v| base_value + v).or(s.map(|s| base_sum + s));
        if value.is_none() && vs.is_none() && vb.is_none() && vd.is_none() {
            return Err(Rejection {
                kind: RejectKind::MissingField,
                reason: format!("SenML record {index}: no value (`v`, `vs`, `vb`, `vd` or `s`)"),
            });
        }
        let time = base_time + number(record, "t", index)?.unwrap_or(0.0);
        // Every time below 2^28, negative ones included, is relative to now (§4.5.3).
        let time_micros = if time < RELATIVE_LIMIT {
            now_micros.saturating_add((time * 1e6) as i64)
        } else {
            (time * 1e6) as i64
        };
        out.push(SenmlRecord {
            base_name: base_name.clone(),
            name,
            value,
            text: vs,
            boolean: vb,
            data: vd,
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

    // The cases below follow RFC 8428 rule by rule (section numbers in the names).

    #[test]
    fn rfc_4_5_1_a_base_name_alone_is_the_name() {
        // §5.1.1's single datapoint, with the name given as a base name instead.
        let records = resolve(
            br#"[{"bn":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]"#,
            NOW,
        )
        .unwrap();
        assert_eq!(records[0].resolved_name(), "urn:dev:ow:10e2073a01080063");
        assert_eq!(records[0].name, "");
        // §5.1.2: base name and names.
        let records = resolve(
            br#"[{"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},{"n":"current","u":"A","v":1.2}]"#,
            NOW,
        )
        .unwrap();
        assert_eq!(
            records
                .iter()
                .map(SenmlRecord::resolved_name)
                .collect::<Vec<_>>(),
            vec![
                "urn:dev:ow:10e2073a01080063:voltage",
                "urn:dev:ow:10e2073a01080063:current"
            ]
        );
    }

    #[test]
    fn rfc_4_5_1_names_follow_the_grammar() {
        let pack =
            |name: &str| serde_json::to_vec(&serde_json::json!([{ "n": name, "v": 1 }])).unwrap();
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-:./_".contains(c);
        let first_allowed = |c: char| c.is_ascii_alphanumeric();
        // Every character of the first 256 code points, first and inside a name.
        for c in (0u32..256).filter_map(char::from_u32) {
            for (name, valid) in [
                (format!("{c}abc"), first_allowed(c)),
                (format!("abc{c}9"), allowed(c)),
            ] {
                let result = resolve(&pack(&name), NOW);
                assert_eq!(result.is_ok(), valid, "name {name:?}: {result:?}");
                if let Err(rejection) = result {
                    assert_eq!(rejection.kind, RejectKind::NotSenml, "{name:?}");
                    assert!(rejection.reason.contains("§4.5.1"), "{}", rejection.reason);
                }
            }
        }
        // The rule is on the resolved name: a base name may end in a separator, the name may
        // start with one, and the concatenation is what is checked.
        assert!(resolve(br#"[{"bn":"dev/","n":"_x","v":1}]"#, NOW).is_ok());
        assert!(resolve(br#"[{"bn":"/dev","n":"x","v":1}]"#, NOW).is_err());
        assert!(resolve(br#"[{"bn":"dev","n":" x","v":1}]"#, NOW).is_err());
        assert_eq!(
            resolve(br#"[{"bn":"","n":"","v":1}]"#, NOW)
                .unwrap_err()
                .kind,
            RejectKind::MissingField
        );
    }

    #[test]
    fn rfc_4_4_versions_newer_than_10_or_not_positive_integers_are_refused() {
        for version in ["1", "5", "10", "10.0"] {
            let pack = format!(r#"[{{"bn":"d/","bver":{version},"n":"a","v":1}}]"#);
            assert!(resolve(pack.as_bytes(), NOW).is_ok(), "bver {version}");
        }
        for version in ["0", "-1", "11", "10.5", "0.5", "1e9"] {
            let pack = format!(r#"[{{"bn":"d/","bver":{version},"n":"a","v":1}}]"#);
            let rejection = resolve(pack.as_bytes(), NOW).unwrap_err();
            assert_eq!(rejection.kind, RejectKind::NotSenml, "bver {version}");
            assert!(rejection.reason.contains("§4.4"), "{}", rejection.reason);
        }
        // In a later record too.
        assert!(
            resolve(
                br#"[{"bn":"d/","n":"a","v":1},{"bver":11,"n":"b","v":2}]"#,
                NOW
            )
            .is_err()
        );
        assert!(resolve(br#"[{"bn":"d/","n":"a","v":1,"bver":"10"}]"#, NOW).is_err());
    }

    #[test]
    fn rfc_4_2_one_value_field_per_record() {
        let fields = [
            ("v", "1.5"),
            ("vs", "\"on\""),
            ("vb", "true"),
            ("vd", "\"AQID\""),
        ];
        for (i, (a, x)) in fields.iter().enumerate() {
            let single = format!(r#"[{{"n":"a",{a:?}:{x}}}]"#);
            assert!(resolve(single.as_bytes(), NOW).is_ok(), "{single}");
            // A sum beside a value is allowed.
            let with_sum = format!(r#"[{{"n":"a",{a:?}:{x},"s":3}}]"#);
            assert!(resolve(with_sum.as_bytes(), NOW).is_ok(), "{with_sum}");
            for (b, y) in &fields[i + 1..] {
                let two = format!(r#"[{{"n":"a",{a:?}:{x},{b:?}:{y}}}]"#);
                let rejection = resolve(two.as_bytes(), NOW).unwrap_err();
                assert_eq!(rejection.kind, RejectKind::NotSenml, "{two}");
                assert!(
                    rejection.reason.contains("2 value fields"),
                    "{}",
                    rejection.reason
                );
            }
        }
        let all = br#"[{"n":"a","v":1,"vs":"x","vb":false,"vd":"AA"}]"#;
        assert!(
            resolve(all, NOW)
                .unwrap_err()
                .reason
                .contains("4 value fields")
        );
        // Only a sum: allowed.
        assert_eq!(
            resolve(br#"[{"n":"a","s":7}]"#, NOW).unwrap()[0].value,
            Some(7.0)
        );
    }

    #[test]
    fn rfc_4_2_data_values_are_kept_apart_from_strings() {
        let records = resolve(
            br#"[{"bn":"d/","n":"blob","vd":"AQID-_8"},{"n":"note","vs":"AQID-_8"}]"#,
            NOW,
        )
        .unwrap();
        assert_eq!(
            (records[0].data.as_deref(), records[0].text.as_deref()),
            (Some("AQID-_8"), None)
        );
        assert_eq!(
            (records[1].data.as_deref(), records[1].text.as_deref()),
            (None, Some("AQID-_8"))
        );
        for data in ["", "AA", "AAA", "AAAA", "-_-_"] {
            let pack = format!(r#"[{{"n":"a","vd":"{data}"}}]"#);
            assert!(resolve(pack.as_bytes(), NOW).is_ok(), "{data:?}");
        }
        // Padding, the standard alphabet, a length no encoding gives, other characters.
        for data in ["AQ==", "a+b/", "A", "AAAAA", "a b", "é"] {
            let pack = format!(r#"[{{"n":"a","vd":"{data}"}}]"#);
            let rejection = resolve(pack.as_bytes(), NOW).unwrap_err();
            assert!(
                rejection.reason.contains("base64url"),
                "{data:?}: {rejection:?}"
            );
        }
    }

    #[test]
    fn rfc_4_5_3_times_below_2_pow_28_are_relative_negative_ones_too() {
        for (time, expected) in [
            (0.0, NOW),
            (-5.0, NOW - 5_000_000),
            (-1e9, NOW - 1_000_000_000_000_000),
            (268_435_455.0, NOW + 268_435_455_000_000),
            (268_435_456.0, 268_435_456_000_000),
            (1.7e9, 1_700_000_000_000_000),
        ] {
            let pack = format!(r#"[{{"n":"a","v":1,"t":{time}}}]"#);
            assert_eq!(
                resolve(pack.as_bytes(), NOW).unwrap()[0].time_micros,
                expected,
                "t = {time}"
            );
        }
    }

    #[test]
    fn records_sharing_name_and_time_are_all_resolved() {
        // 13 records, several with one name and time (the RFC does not make them duplicates).
        let mut pack = vec![serde_json::json!({"bn": "amb-1/", "bt": 1.7e9, "n": "pm10", "v": 0})];
        for i in 1..13 {
            let name = ["pm10", "pm2_5", "no2"][i % 3];
            pack.push(serde_json::json!({"n": name, "v": i}));
        }
        let records = resolve(&serde_json::to_vec(&pack).unwrap(), NOW).unwrap();
        assert_eq!(records.len(), 13);
        assert_eq!(records.iter().filter(|r| r.name == "pm10").count(), 5);
    }
}
