//! `-o yaml`: the JSON output's value written as a YAML document.
//!
//! Written here rather than taken from a crate: serde_yaml is deprecated
//! upstream and its forks are young or carry a C-derived parser we do not
//! need, while turning plain JSON data (objects, arrays, strings, numbers,
//! booleans, null) into YAML block style is small. Keys come in the order
//! of the JSON value (alphabetical, as serde_json keeps objects). Strings are written
//! plain only when YAML reads them back as the same string; otherwise they
//! are double-quoted with JSON escapes, which YAML reads the same way.

use serde_json::Value;

/// One YAML document for `value`, starting with `---` (so that a stream of
/// them, as `watch -o yaml` prints, splits into documents) and ending with
/// a newline.
pub fn document(value: &Value) -> String {
    let mut out = String::from("---");
    match value {
        Value::Array(a) if !a.is_empty() => block(&mut out, value, 0),
        Value::Object(o) if !o.is_empty() => block(&mut out, value, 0),
        scalar => {
            out.push(' ');
            out.push_str(&inline(scalar));
        }
    }
    out.push('\n');
    out
}

/// A block collection at `indent`, each entry on a line of its own.
fn block(out: &mut String, value: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            // Sorted here: serde_json keeps insertion order in builds where
            // another crate turns on its `preserve_order`, and YAML output
            // must not depend on what else was built with the console.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            for (k, v) in entries {
                out.push('\n');
                out.push_str(&pad);
                out.push_str(&string(k));
                out.push(':');
                nested(out, v, indent + 2);
            }
        }
        Value::Array(items) => {
            for v in items {
                out.push('\n');
                out.push_str(&pad);
                out.push('-');
                match v {
                    // `- key: value` with the other keys below it.
                    Value::Object(m) if !m.is_empty() => {
                        let mut inner = String::new();
                        block(&mut inner, v, indent + 2);
                        out.push(' ');
                        out.push_str(&inner[indent + 3..]);
                    }
                    _ => nested(out, v, indent + 2),
                }
            }
        }
        scalar => {
            out.push(' ');
            out.push_str(&inline(scalar));
        }
    }
}

/// A value after `key:` or `-`: a non-empty collection as a block below,
/// anything else on the same line.
fn nested(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(m) if !m.is_empty() => block(out, value, indent),
        Value::Array(a) if !a.is_empty() => block(out, value, indent),
        _ => {
            out.push(' ');
            out.push_str(&inline(value));
        }
    }
}

/// A scalar or an empty collection on one line.
fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".to_string(),
        Value::Object(_) => "{}".to_string(),
    }
}

/// A string, plain when that reads back as the same string, else quoted.
fn string(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_string()
    } else {
        // JSON's escapes are YAML's double-quoted escapes.
        Value::String(s.to_string()).to_string()
    }
}

/// Whether `s` can be written unquoted: no character YAML gives a meaning
/// to at the start or inside, and not a word or number YAML would read as
/// something else than a string.
fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '/' || first == '_') {
        return false;
    }
    if s.ends_with(' ') || s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return false;
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " _-./:=@+()".contains(c))
    {
        return false;
    }
    const SPECIAL: [&str; 22] = [
        "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "yes", "Yes",
        "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF", "y",
    ];
    !(SPECIAL.contains(&s) || s == "Y" || s == "n" || s == "N" || s == ".inf" || s == ".nan")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_and_arrays_are_blocks() {
        let v = json!([{"name": "w1", "state": "ready", "capacity": 4,
            "labels": {"zone": "eu-1"}, "recordings": ["math-101", "bio-7"],
            "ended_at": null, "tags": [], "meta": {}}]);
        assert_eq!(
            document(&v),
            "---\n- capacity: 4\n  ended_at: null\n  labels:\n    zone: eu-1\n  meta: {}\n  \
             name: w1\n  recordings:\n    - math-101\n    - bio-7\n  state: ready\n  tags: []\n"
        );
        let nested = json!({"a": [{"b": 1, "c": [{"d": 2}]}]});
        assert_eq!(
            document(&nested),
            "---\na:\n  - b: 1\n    c:\n      - d: 2\n"
        );
    }

    #[test]
    fn scalars_and_empty_documents() {
        assert_eq!(document(&json!([])), "--- []\n");
        assert_eq!(document(&json!({})), "--- {}\n");
        assert_eq!(document(&json!(null)), "--- null\n");
        assert_eq!(document(&json!({"a": -1.5})), "---\na: -1.5\n");
    }

    #[test]
    fn strings_yaml_would_misread_are_quoted() {
        for s in [
            "",
            "true",
            "no",
            "null",
            "42",
            "1.5",
            "-x",
            "a: b",
            "x #c",
            "tab\there",
            "line\nnext",
            "[x]",
            "{x}",
            "*ref",
            "&a",
            "!tag",
            "%x",
            "@x",
            "`x",
            "'q'",
            "\"q\"",
            "x ",
            " x",
            "ünï",
            "y",
            "~",
        ] {
            let out = string(s);
            assert!(out.starts_with('"'), "{s:?} -> {out}");
            // What YAML (and JSON) reads back.
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, s);
        }
        for s in [
            "math-101",
            "https://class.example/room/1",
            "w1",
            "zone=eu-1",
            "recording bio-7 on w1 (epoch 1)",
            "operator",
        ] {
            assert_eq!(string(s), s);
        }
    }
}
