//! Small operations on JSON text that keep every value's bytes as they are: following a JSON
//! pointer into a value, taking an array or an object apart one level, finding a placeholder
//! token, and adding a member to an object. Only the levels walked are parsed, and a value is
//! always handed on as the slice of text it was read from, so `1.0e+300`, `-0.0`, long integers
//! and escaped unicode come out exactly as they went in.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// An RFC 6901 JSON pointer, parsed: "/a/b~1c" is ["a", "b/c"].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pointer {
    text: String,
    tokens: Vec<String>,
}

impl Pointer {
    pub fn parse(text: &str) -> Result<Pointer, String> {
        if text.is_empty() {
            return Ok(Pointer {
                text: String::new(),
                tokens: Vec::new(),
            });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "'{text}' is not a JSON pointer: it must be empty or start with '/', as in /text"
            ));
        };
        let tokens = rest
            .split('/')
            .map(|token| token.replace("~1", "/").replace("~0", "~"))
            .collect();
        Ok(Pointer {
            text: text.to_owned(),
            tokens,
        })
    }

    /// The value this pointer names in `json`, or None when there is none.
    pub fn find<'a>(&self, json: &'a RawValue) -> Option<&'a RawValue> {
        let mut at = json;
        for token in &self.tokens {
            at = child(at, token)?;
        }
        Some(at)
    }
}

impl std::fmt::Display for Pointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The member `token` of an object, or the element at index `token` of an array.
fn child<'a>(json: &'a RawValue, token: &str) -> Option<&'a RawValue> {
    match json.get().trim_start().as_bytes().first()? {
        b'{' => members(json)?
            .into_iter()
            .find(|(name, _)| name == token)
            .map(|(_, value)| value),
        b'[' => {
            // RFC 6901: an index is digits without leading zeros.
            if token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
                return None;
            }
            let index: usize = token.parse().ok()?;
            elements(json)?.into_iter().nth(index)
        }
        _ => None,
    }
}

/// The elements of a JSON array, or None when `json` is not an array.
pub fn elements(json: &RawValue) -> Option<Vec<&RawValue>> {
    if !json.get().trim_start().starts_with('[') {
        return None;
    }
    serde_json::from_str(json.get()).ok()
}

/// The members of a JSON object, in order, or None when `json` is not an object.
pub fn members(json: &RawValue) -> Option<Vec<(String, &RawValue)>> {
    if !json.get().trim_start().starts_with('{') {
        return None;
    }
    let mut de = serde_json::Deserializer::from_str(json.get());
    de.deserialize_map(Members).ok()
}

struct Members;

impl<'de> Visitor<'de> for Members {
    type Value = Vec<(String, &'de RawValue)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
            members.push(member);
        }
        Ok(members)
    }
}

/// Whether `json` is an object.
pub fn is_object(json: &RawValue) -> bool {
    json.get().trim_start().starts_with('{')
}

/// `object` (a JSON object) with `name` set to `value`: replaced in place when present,
/// added at the end otherwise. Other members keep their text.
pub fn with_member(object: &RawValue, name: &str, value: &RawValue) -> Option<String> {
    let members = members(object)?;
    let key = serde_json::to_string(name).ok()?;
    let mut out = String::with_capacity(object.get().len() + key.len() + value.get().len() + 2);
    out.push('{');
    let mut replaced = false;
    for (i, (member, text)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(member).ok()?);
        out.push(':');
        if member == name && !replaced {
            out.push_str(value.get());
            replaced = true;
        } else {
            out.push_str(text.get());
        }
    }
    if !replaced {
        if !members.is_empty() {
            out.push(',');
        }
        out.push_str(&key);
        out.push(':');
        out.push_str(value.get());
    }
    out.push('}');
    Some(out)
}

/// Where the bare token `token` (such as `$batch`) stands in `text`, outside JSON strings.
/// Every occurrence is returned, so that a caller can insist on exactly one.
pub fn placeholders(text: &str, token: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let (mut at, mut in_string) = (0, false);
    while at < bytes.len() {
        match bytes[at] {
            b'\\' if in_string => at += 1,
            b'"' => in_string = !in_string,
            _ if !in_string && text[at..].starts_with(token) => {
                let next = bytes.get(at + token.len());
                if !next.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
                    found.push(at);
                }
            }
            _ => {}
        }
        at += 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn pointers_find_values_and_keep_their_text() {
        let doc = raw(
            r#"{"a": {"b/c": [10, 1.0e+300, {"~k": -0.0}]}, "n": 12345678901234567890123, "u": "\u00e9"}"#,
        );
        let find = |p: &str| {
            Pointer::parse(p)
                .unwrap()
                .find(&doc)
                .map(|v| v.get().to_owned())
        };
        assert_eq!(find("/a/b~1c/1").as_deref(), Some("1.0e+300"));
        assert_eq!(find("/a/b~1c/2/~0k").as_deref(), Some("-0.0"));
        assert_eq!(find("/n").as_deref(), Some("12345678901234567890123"));
        assert_eq!(find("/u").as_deref(), Some(r#""\u00e9""#));
        assert_eq!(find("").as_deref(), Some(doc.get()));
        assert_eq!(find("/a/b~1c/3"), None);
        assert_eq!(find("/a/b~1c/01"), None);
        assert_eq!(find("/missing"), None);
        assert_eq!(find("/n/0"), None);
        assert!(Pointer::parse("text").is_err());
    }

    #[test]
    fn members_are_replaced_or_added_and_the_rest_untouched() {
        let value = raw("[0.5, 2]");
        let record = raw(r#"{"id": 1.0e+300, "text": "a \"b\""}"#);
        assert_eq!(
            with_member(&record, "pred", &value).unwrap(),
            r#"{"id":1.0e+300,"text":"a \"b\"","pred":[0.5, 2]}"#
        );
        let again = raw(r#"{"pred": 0, "id": 7}"#);
        assert_eq!(
            with_member(&again, "pred", &value).unwrap(),
            r#"{"pred":[0.5, 2],"id":7}"#
        );
        assert_eq!(
            with_member(&raw("{}"), "p", &value).unwrap(),
            r#"{"p":[0.5, 2]}"#
        );
        assert_eq!(with_member(&raw("[1]"), "p", &value), None);
    }

    #[test]
    fn placeholders_outside_strings_only() {
        assert_eq!(placeholders(r#"{"input": $batch}"#, "$batch"), [10]);
        assert_eq!(
            placeholders(r#"{"a": "$batch", "b": $batch}"#, "$batch"),
            [21]
        );
        assert!(placeholders(r#"{"a": "x\"$batch"}"#, "$batch").is_empty());
        assert_eq!(placeholders("$batch", "$batch"), [0]);
        assert!(placeholders("$batches", "$batch").is_empty());
        assert_eq!(placeholders("[$batch, $batch]", "$batch").len(), 2);
    }
}
