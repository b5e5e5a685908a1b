//! Topics: matching a topic against subscription filters (`+` one level, `#` the rest) and
//! reading columns out of its levels with a pattern such as `bologna/+/{sensor_id}/{metric}`.

use crate::config_text::is_sql_identifier;

/// Whether `filter` is a valid subscription filter.
pub fn check_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("an empty filter".into());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err("`#` must be the last level, alone".into());
        }
        if level.contains('+') && *level != "+" {
            return Err("`+` must be a whole level".into());
        }
    }
    Ok(())
}

/// Whether `topic` matches `filter` (MQTT 3.1.1 §4.7; topics starting with `$` are not matched
/// by a leading wildcard).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    Capture(String),
    Skip,
    Rest,
}

/// Columns read from the levels of a topic.
#[derive(Debug, Clone)]
pub struct TopicPattern {
    text: String,
    levels: Vec<Level>,
}

impl TopicPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let mut levels = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let level = if *part == "+" {
                Level::Skip
            } else if *part == "#" {
                if i + 1 != parts.len() {
                    return Err(format!("`{text}`: `#` must be the last level"));
                }
                Level::Rest
            } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if !is_sql_identifier(name) {
                    return Err(format!(
                        "`{text}`: `{{{name}}}` is a column name: use lowercase letters, digits and `_`"
                    ));
                }
                if levels.contains(&Level::Capture(name.to_string())) {
                    return Err(format!("`{text}`: `{{{name}}}` appears twice"));
                }
                Level::Capture(name.to_string())
            } else if part.contains(['{', '}', '+', '#']) {
                return Err(format!(
                    "`{text}`: level `{part}` is neither a literal, `+`, `#` nor `{{column}}`"
                ));
            } else {
                Level::Literal(part.to_string())
            };
            levels.push(level);
        }
        Ok(Self {
            text: text.to_string(),
            levels,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The column names the pattern fills, in order.
    pub fn captures(&self) -> Vec<String> {
        self.levels
            .iter()
            .filter_map(|l| match l {
                Level::Capture(name) => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    /// The captured levels of `topic`, in the order of `captures`, or None if it does not fit.
    pub fn extract<'t>(&self, topic: &'t str) -> Option<Vec<&'t str>> {
        let mut out = Vec::new();
        let mut topic_levels = topic.split('/');
        for level in &self.levels {
            match level {
                Level::Rest => return Some(out),
                _ => {
                    let value = topic_levels.next()?;
                    match level {
                        Level::Literal(literal) if literal != value => return None,
                        Level::Capture(_) => out.push(value),
                        _ => {}
                    }
                }
            }
        }
        topic_levels.next().is_none().then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_like_a_broker() {
        assert!(matches("bologna/+/+/+", "bologna/wifi/ap-1/clients"));
        assert!(!matches("bologna/+/+/+", "bologna/wifi/ap-1"));
        assert!(matches("bologna/#", "bologna/wifi/ap-1/clients"));
        assert!(matches("bologna/#", "bologna"));
        assert!(!matches("#", "$SYS/broker/uptime"));
        assert!(check_filter("a/#/b").is_err());
        assert!(check_filter("a/b+").is_err());
        assert!(check_filter("+/a/#").is_ok());
    }

    #[test]
    fn patterns_read_columns_from_levels() {
        let pattern = TopicPattern::parse("bologna/+/{sensor_id}/{metric}").unwrap();
        assert_eq!(pattern.captures(), vec!["sensor_id", "metric"]);
        assert_eq!(
            pattern.extract("bologna/probe/sonda-1/latency_ms"),
            Some(vec!["sonda-1", "latency_ms"])
        );
        assert_eq!(pattern.extract("milano/probe/sonda-1/latency_ms"), None);
        assert_eq!(pattern.extract("bologna/probe/sonda-1"), None);
        assert_eq!(pattern.extract("bologna/probe/sonda-1/a/b"), None);
        let rest = TopicPattern::parse("senml/{sensor_id}/#").unwrap();
        assert_eq!(rest.extract("senml/amb-1/x/y"), Some(vec!["amb-1"]));
        assert!(TopicPattern::parse("a/{Bad}").is_err());
        assert!(TopicPattern::parse("a/#/b").is_err());
    }
}
