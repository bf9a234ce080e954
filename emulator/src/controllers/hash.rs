//! `pod-template-hash`: a stable name suffix for a pod template, shaped
//! like the Deployment controller's (a 32-bit FNV-1a hash, written in
//! decimal, each digit mapped into the "safe" alphabet, so 1 to 10 of the
//! characters `4 5 6 7 8 9 b c d f`).
//!
//! The real controller hashes Go's debug dump of the template struct, which
//! cannot be reproduced here; this hashes the template's JSON with sorted
//! keys instead. Equal templates get equal hashes, different ones (almost
//! always) different hashes, but the values differ from a real cluster's.

use serde_json::Value;

/// The alphabet Kubernetes uses for generated names and encoded hashes
/// (no vowels, no look-alike characters).
pub const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

fn fnv1a(bytes: &[u8], mut hash: u32) -> u32 {
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// JSON with object keys sorted at every level, so the hash does not depend
/// on the order fields were written in.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Maps each byte into the safe alphabet by its value, as the real
/// encoder does with the decimal digits of the hash.
fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// The `pod-template-hash` of a pod template; `collision_count` (the
/// Deployment's `status.collisionCount`) is mixed in as the real one is.
pub fn pod_template_hash(template: &Value, collision_count: Option<u32>) -> String {
    let mut text = String::new();
    canonical(template, &mut text);
    let mut hash = fnv1a(text.as_bytes(), FNV_OFFSET);
    if let Some(n) = collision_count {
        hash = fnv1a(&n.to_le_bytes(), hash);
    }
    safe_encode(&hash.to_string())
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_template_hash_is_stable_and_uses_the_digit_alphabet() {
        let a = json!({"metadata": {"labels": {"app": "w", "tier": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let b = json!({"spec": {"containers": [{"image": "i", "name": "c"}]}, "metadata": {"labels": {"tier": "x", "app": "w"}}});
        let h = pod_template_hash(&a, None);
        assert_eq!(h, pod_template_hash(&b, None), "key order must not matter");
        assert!((1..=10).contains(&h.len()), "{h}");
        assert!(h.chars().all(|c| "456789bcdf".contains(c)), "{h}");
        let changed = json!({"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "c", "image": "j"}]}});
        assert_ne!(h, pod_template_hash(&changed, None));
        assert_ne!(h, pod_template_hash(&a, Some(1)));
    }

    #[test]
    fn safe_encoding_maps_decimal_digits_like_kubernetes() {
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
    }
}
