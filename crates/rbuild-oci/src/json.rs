//! Canonical JSON for everything rbuild emits.
//!
//! Digests of configs, manifests and indexes must not depend on map iteration
//! order or on whether some other crate in the build enabled serde_json's
//! `preserve_order` feature, so object keys are always written sorted (by
//! bytes) and output is compact. Only what *we* create goes through here:
//! pulled documents keep their original bytes.

use serde::Serialize;
use serde_json::Value;

/// Serialises `value` as compact JSON with object keys sorted.
pub fn to_canonical_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let v = serde_json::to_value(value)?;
    let mut out = Vec::with_capacity(256);
    write_value(&v, &mut out)?;
    Ok(out)
}

/// Like [`to_canonical_vec`], for callers that want a `String`.
pub fn to_canonical_string<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let bytes = to_canonical_vec(value)?;
    // serde_json only ever writes UTF-8.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn write_value(v: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k)?;
                out.push(b':');
                if let Some(child) = map.get(k) {
                    write_value(child, out)?;
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn keys_are_sorted_recursively_and_output_is_compact() {
        let mut m = HashMap::new();
        for k in ["zeta", "alpha", "Mid", "beta"] {
            m.insert(k.to_owned(), serde_json::json!({"y": [1, {"b": 2, "a": "x\"y"}], "x": null}));
        }
        let s = to_canonical_string(&m).unwrap();
        assert!(s.starts_with(r#"{"Mid":{"x":null,"y":[1,{"a":"x\"y","b":2}]},"alpha":"#), "{s}");
        assert!(!s.contains(' '));
        let again = to_canonical_vec(&serde_json::from_str::<Value>(&s).unwrap()).unwrap();
        assert_eq!(again, s.as_bytes());
    }
}
