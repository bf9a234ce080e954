//! How the history's times look in `status.history`: RFC 3339 with
//! milliseconds (`2026-11-26T14:31:02.123Z`), readable in `kubectl
//! describe`, while the decision keeps unix milliseconds for its arithmetic.
//!
//! Reading accepts both forms, because operators before this one wrote bare
//! unix milliseconds and a stored status must survive an upgrade. Anything
//! else (a malformed or out-of-range time) reads as [`UNREADABLE`], which is
//! before the epoch, so [`super::History::sanitized`] drops it like any other
//! time that cannot be true — status is untrusted input, and one bad entry
//! must not make the whole WorkerPool unreadable.

use schemars::{json_schema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serializer};

/// What a time that cannot be read becomes: far before the epoch.
pub const UNREADABLE: i64 = i64::MIN;

/// A time as written to status, or read back from it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Millis(i64),
    Text(String),
    Other(serde::de::IgnoredAny),
}

impl Written {
    fn millis(self) -> i64 {
        match self {
            Written::Millis(ms) => ms,
            Written::Text(text) => text
                .parse::<jiff::Timestamp>()
                .map_or(UNREADABLE, |t| t.as_millisecond()),
            Written::Other(_) => UNREADABLE,
        }
    }
}

/// The RFC 3339 text of `ms`; a time jiff cannot represent stays a number
/// (it can only have come from a status someone else wrote).
fn text(ms: i64) -> Result<String, i64> {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| format!("{t:.3}"))
        .map_err(|_| ms)
}

/// Serializes unix milliseconds as RFC 3339.
pub fn serialize<S: Serializer>(ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    match text(*ms) {
        Ok(t) => serializer.serialize_str(&t),
        Err(ms) => serializer.serialize_i64(ms),
    }
}

/// Reads RFC 3339 text or unix milliseconds.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    Ok(Written::deserialize(deserializer)?.millis())
}

/// The schema of one time: a string (or, from older operators, an integer).
pub fn schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "x-kubernetes-int-or-string": true })
}

/// The schema of the failure counters (`u32` values): bounds instead of a
/// `uint32` format, which the API server does not know and warns about.
pub fn failure_counts_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": { "type": "integer", "minimum": 0, "maximum": u32::MAX }
    })
}

/// The same for an optional time.
pub mod optional {
    use super::*;

    /// Serializes an optional time (fields skip `None` themselves).
    pub fn serialize<S: Serializer>(ms: &Option<i64>, serializer: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => super::serialize(ms, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// Reads an optional time; `null` is `None`.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<i64>, D::Error> {
        Ok(Option::<Written>::deserialize(deserializer)?.map(Written::millis))
    }

    /// The schema of an optional time.
    pub fn schema(generator: &mut SchemaGenerator) -> Schema {
        super::schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::UNREADABLE;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct At {
        #[serde(with = "super")]
        at: i64,
        #[serde(default, with = "super::optional")]
        since: Option<i64>,
    }

    #[test]
    fn times_are_written_as_rfc3339_with_milliseconds() {
        let json = serde_json::to_value(At {
            at: 1_795_703_462_123,
            since: Some(1_795_703_462_000),
        })
        .unwrap();
        assert_eq!(json["at"], "2026-11-26T14:31:02.123Z");
        assert_eq!(json["since"], "2026-11-26T14:31:02.000Z");
    }

    #[test]
    fn both_the_text_and_older_operators_numbers_read_back() {
        let text: At = serde_json::from_str(
            r#"{"at":"2026-11-26T14:31:02.123Z","since":"2026-11-26T15:31:02+01:00"}"#,
        )
        .unwrap();
        assert_eq!(
            text,
            At {
                at: 1_795_703_462_123,
                since: Some(1_795_703_462_000)
            }
        );
        let numbers: At = serde_json::from_str(r#"{"at":1795703462123,"since":null}"#).unwrap();
        assert_eq!(
            numbers,
            At {
                at: 1_795_703_462_123,
                since: None
            }
        );
    }

    #[test]
    fn unreadable_times_read_as_before_the_epoch_instead_of_failing_the_object() {
        for bad in [
            r#""yesterday""#,
            "true",
            "1.5e300",
            r#"{"a":1}"#,
            r#""9999999-01-01T00:00:00Z""#,
        ] {
            let at: At = serde_json::from_str(&format!(r#"{{"at":{bad}}}"#)).unwrap();
            assert_eq!(at.at, UNREADABLE, "{bad}");
        }
    }

    #[test]
    fn a_time_outside_what_rfc3339_can_show_round_trips_as_a_number() {
        let json = serde_json::to_string(&At {
            at: i64::MAX,
            since: None,
        })
        .unwrap();
        let back: At = serde_json::from_str(&json).unwrap();
        assert_eq!(back.at, i64::MAX);
    }
}
