//! Which page comes next: by page number, by offset, by a cursor found in the response at a JSON
//! pointer, or by the `Link: <…>; rel="next"` header. Next-page URLs given by the server are only
//! followed on the same origin, so credentials never travel to another host.

use std::collections::HashSet;

use reqwest::Url;
use reqwest::header::{HeaderMap, LINK};
use serde_json::Value;

use super::client::display_url;
use super::config::{HttpTableConfig, Incremental, Pagination, SINCE};

pub struct Pager {
    pagination: Pagination,
    /// The table's URL with its query parameters and the cursor of an incremental pull.
    base: Url,
    page: u64,
    offset: u64,
    received: u64,
    seen: HashSet<String>,
}

impl Pager {
    pub fn new(table: &HttpTableConfig, since: Option<&str>) -> Result<Self, String> {
        let with_since = |text: &str, encode: bool| match since {
            Some(since) if encode => text.replace(SINCE, &percent_encode(since)),
            Some(since) => text.replace(SINCE, since),
            None => text.to_string(),
        };
        let mut base = Url::parse(&with_since(&table.url, true))
            .map_err(|e| format!("`{}` is not a URL: {e}", table.url))?;
        if !table.query.is_empty() {
            let mut pairs = base.query_pairs_mut();
            for (key, value) in &table.query {
                pairs.append_pair(key, &with_since(value, false));
            }
        }
        if let (
            Some(Incremental {
                param: Some(param), ..
            }),
            Some(since),
        ) = (&table.incremental, since)
        {
            base.query_pairs_mut().append_pair(param, since);
        }
        let (page, offset) = match &table.pagination {
            Pagination::Page(page) => (page.first, 0),
            _ => (0, 0),
        };
        Ok(Self {
            pagination: table.pagination.clone(),
            base,
            page,
            offset,
            received: 0,
            seen: HashSet::new(),
        })
    }

    /// The URL of the first page.
    pub fn first(&self) -> Url {
        match &self.pagination {
            Pagination::Page(_) | Pagination::Offset(_) => self.numbered(),
            _ => self.base.clone(),
        }
    }

    fn numbered(&self) -> Url {
        let mut url = self.base.clone();
        match &self.pagination {
            Pagination::Page(page) => {
                url.query_pairs_mut()
                    .append_pair(&page.param, &self.page.to_string());
                if let (Some(param), Some(size)) = (&page.size_param, page.size) {
                    url.query_pairs_mut().append_pair(param, &size.to_string());
                }
            }
            Pagination::Offset(offset) => {
                url.query_pairs_mut()
                    .append_pair(&offset.param, &self.offset.to_string())
                    .append_pair(&offset.limit_param, &offset.limit.to_string());
            }
            _ => {}
        }
        url
    }

    /// Given the page just read (its URL, headers, JSON document and number of records), the URL
    /// of the next page, or `None` when this was the last.
    pub fn next(
        &mut self,
        current: &Url,
        headers: &HeaderMap,
        document: Option<&Value>,
        records: u64,
    ) -> Result<Option<Url>, String> {
        self.received += records;
        let total = |pointer: &Option<String>| -> Result<Option<u64>, String> {
            let Some(pointer) = pointer else {
                return Ok(None);
            };
            let value = document
                .and_then(|d| d.pointer(pointer))
                .ok_or_else(|| format!("no total at JSON pointer `{pointer}`"))?;
            value
                .as_u64()
                .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
                .map(Some)
                .ok_or_else(|| format!("the total at `{pointer}` is not a whole number: {value}"))
        };
        match self.pagination.clone() {
            Pagination::None => Ok(None),
            Pagination::Page(page) => {
                let done = match (total(&page.total)?, &page.total) {
                    (Some(total), Some(pointer)) => self.reached(records, total, pointer)?,
                    _ => records == 0 || page.size.is_some_and(|size| records < size),
                };
                if done {
                    return Ok(None);
                }
                self.page += 1;
                Ok(Some(self.numbered()))
            }
            Pagination::Offset(offset) => {
                let done = match (total(&offset.total)?, &offset.total) {
                    (Some(total), Some(pointer)) => self.reached(records, total, pointer)?,
                    _ => records == 0 || records < offset.limit,
                };
                if done {
                    return Ok(None);
                }
                // Advance by what came, not by what was asked: a server capping the page size
                // would otherwise make us skip records.
                self.offset += records;
                Ok(Some(self.numbered()))
            }
            Pagination::Cursor(cursor) => {
                let next = match document.and_then(|d| d.pointer(&cursor.next)) {
                    None | Some(Value::Null) => return Ok(None),
                    Some(Value::String(s)) if s.is_empty() => return Ok(None),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    Some(other) => {
                        return Err(format!(
                            "the cursor at `{}` is neither a string nor a number: {other}",
                            cursor.next
                        ));
                    }
                };
                if !self.seen.insert(next.clone()) {
                    return Err(format!(
                        "the cursor `{next}` came back a second time: the API is going round in circles"
                    ));
                }
                match &cursor.param {
                    Some(param) => {
                        let mut url = self.base.clone();
                        url.query_pairs_mut().append_pair(param, &next);
                        Ok(Some(url))
                    }
                    None => self.follow(current, &next).map(Some),
                }
            }
            Pagination::Link => {
                let Some(next) = next_link(headers) else {
                    return Ok(None);
                };
                let url = self.follow(current, &next)?;
                if !self.seen.insert(url.to_string()) {
                    return Err(format!(
                        "the next link {} came back a second time: the API is going round in circles",
                        display_url(&url)
                    ));
                }
                Ok(Some(url))
            }
        }
    }

    /// With a declared total, only the total ends the pull: a page shorter than asked only means
    /// the server caps its page size (it may allow 20 where 50 were asked). A page with nothing
    /// on it before the total is reached fails the pull, naming what came and what was declared,
    /// rather than publishing part of the table as if it were whole.
    fn reached(&self, records: u64, total: u64, pointer: &str) -> Result<bool, String> {
        if self.received >= total {
            return Ok(true);
        }
        if records == 0 {
            return Err(format!(
                "received {} of the {total} records the API declares at `{pointer}`, then an empty page: the rest cannot be read (an API that caps its page size must number its pages by the size it really sends; use `offset` pagination otherwise)",
                self.received
            ));
        }
        Ok(false)
    }

    /// A next-page URL given by the server, resolved against the current page, same origin only.
    fn follow(&self, current: &Url, next: &str) -> Result<Url, String> {
        let url = current
            .join(next)
            .map_err(|e| format!("the next page `{next}` is not a URL: {e}"))?;
        if url.origin() != self.base.origin() {
            return Err(format!(
                "the next page is on another origin ({}): not followed, the credentials of this API would go there",
                url.origin().ascii_serialization()
            ));
        }
        Ok(url)
    }
}

/// The target of the `rel="next"` link in `Link` headers (RFC 8288).
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(LINK) {
        let Ok(text) = value.to_str() else { continue };
        let mut rest = text;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>')? + start;
            let target = &rest[start + 1..end];
            let params_end = rest[end..].find('<').map_or(rest.len(), |i| end + i);
            // `; rel="next", <…>`: the comma separates this link from the next one.
            let params = rest[end + 1..params_end].trim_end().trim_end_matches(',');
            let is_next = params.split(';').any(|p| {
                let Some((key, value)) = p.split_once('=') else {
                    return false;
                };
                key.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
            });
            if is_next {
                return Some(target.to_string());
            }
            rest = &rest[params_end..];
        }
    }
    None
}

/// Percent-encode everything but RFC 3986's unreserved characters, for a value put in a URL path.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(extra: &str) -> HttpTableConfig {
        toml::from_str(&format!(
            "name = \"t\"\nurl = \"https://api.example.it/v1/x?fixed=1\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn link_headers_with_several_relations() {
        let mut headers = HeaderMap::new();
        headers.append(
            LINK,
            r#"<https://a.it/x?page=1>; rel="first", <https://a.it/x?page=3>; rel="next last""#
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("https://a.it/x?page=3")
        );
        headers.clear();
        headers.append(
            LINK,
            r#"<https://a.it/x?page=2>; rel="next", <https://a.it/x?page=9>; rel="last""#
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("https://a.it/x?page=2")
        );
        headers.clear();
        headers.append(
            LINK,
            r#"<https://a.it/x?page=1>; rel="prev""#.parse().unwrap(),
        );
        assert_eq!(next_link(&headers), None);
    }

    #[test]
    fn offsets_advance_by_what_came_and_stop_on_a_short_page() {
        let table = table("pagination = { type = \"offset\", limit = 3 }");
        let mut pager = Pager::new(&table, None).unwrap();
        let first = pager.first();
        assert_eq!(
            first.as_str(),
            "https://api.example.it/v1/x?fixed=1&offset=0&limit=3"
        );
        let second = pager
            .next(&first, &HeaderMap::new(), None, 3)
            .unwrap()
            .unwrap();
        assert_eq!(
            second.as_str(),
            "https://api.example.it/v1/x?fixed=1&offset=3&limit=3"
        );
        assert_eq!(
            pager.next(&second, &HeaderMap::new(), None, 2).unwrap(),
            None
        );
    }

    #[test]
    fn with_a_total_only_the_total_ends_the_pull() {
        let offsets = table("pagination = { type = \"offset\", limit = 5, total = \"/n\" }");
        let mut pager = Pager::new(&offsets, None).unwrap();
        let total = serde_json::json!({"n": 7});
        let first = pager.first();
        // The server caps pages at 3: short pages go on until 7 have come.
        let second = pager
            .next(&first, &HeaderMap::new(), Some(&total), 3)
            .unwrap()
            .unwrap();
        assert_eq!(second.query(), Some("fixed=1&offset=3&limit=5"));
        let third = pager
            .next(&second, &HeaderMap::new(), Some(&total), 3)
            .unwrap()
            .unwrap();
        assert_eq!(third.query(), Some("fixed=1&offset=6&limit=5"));
        assert_eq!(
            pager
                .next(&third, &HeaderMap::new(), Some(&total), 1)
                .unwrap(),
            None
        );

        let pages = table("pagination = { type = \"page\", size = 5, total = \"/n\" }");
        let mut pager = Pager::new(&pages, None).unwrap();
        let first = pager.first();
        let second = pager
            .next(&first, &HeaderMap::new(), Some(&total), 4)
            .unwrap()
            .unwrap();
        let error = pager
            .next(&second, &HeaderMap::new(), Some(&total), 0)
            .unwrap_err();
        assert!(
            error.starts_with(
                "received 4 of the 7 records the API declares at `/n`, then an empty page"
            ),
            "{error}"
        );
    }

    #[test]
    fn the_incremental_cursor_is_encoded_where_it_goes() {
        let mut table = table(
            "query = { dal = \"{since}\" }\nschema = { id = \"int\" }\nincremental = { column = \"id\", start = \"0\", param = \"since\" }",
        );
        table.url = "https://api.example.it/v1/{since}/x".into();
        let pager = Pager::new(&table, Some("2024-05-01T10:00:00+02:00")).unwrap();
        assert_eq!(
            pager.first().as_str(),
            "https://api.example.it/v1/2024-05-01T10%3A00%3A00%2B02%3A00/x?dal=2024-05-01T10%3A00%3A00%2B02%3A00&since=2024-05-01T10%3A00%3A00%2B02%3A00"
        );
    }

    #[test]
    fn cursors_and_links_to_other_hosts_are_not_followed() {
        let table = table("pagination = { type = \"cursor\", next = \"/next\" }");
        let mut pager = Pager::new(&table, None).unwrap();
        let first = pager.first();
        let document = serde_json::json!({"next": "/v1/x?cursor=abc"});
        let next = pager
            .next(&first, &HeaderMap::new(), Some(&document), 10)
            .unwrap()
            .unwrap();
        assert_eq!(next.as_str(), "https://api.example.it/v1/x?cursor=abc");
        let elsewhere = serde_json::json!({"next": "https://evil.example.com/steal"});
        let error = pager
            .next(&next, &HeaderMap::new(), Some(&elsewhere), 10)
            .unwrap_err();
        assert!(
            error.contains("another origin (https://evil.example.com)"),
            "{error}"
        );
        let again = serde_json::json!({"next": "/v1/x?cursor=abc"});
        assert!(
            pager
                .next(&next, &HeaderMap::new(), Some(&again), 10)
                .unwrap_err()
                .contains("came back")
        );
        assert_eq!(
            pager
                .next(
                    &next,
                    &HeaderMap::new(),
                    Some(&serde_json::json!({"next": null})),
                    10
                )
                .unwrap(),
            None
        );
    }
}
