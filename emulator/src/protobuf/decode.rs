//! A message on the wire → the JSON the same object serializes to in Go.

use base64::Engine;
use serde_json::{Map, Value};

use super::schema::{Field, Kind, Message, Shape};
use super::wire::{Fields, WireError, WireValue};

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A field the emulator's message table does not list: refused rather
    /// than dropped, so a missing field is never a silent difference.
    #[error("{message} field number {number} is not known to the emulator; send this object as JSON (kubectl create -f)")]
    UnknownField { message: &'static str, number: u32 },
    #[error("{message}.{field}: unexpected wire type")]
    WireType {
        message: &'static str,
        field: &'static str,
    },
    #[error("{message}.{field}: not valid UTF-8")]
    Utf8 {
        message: &'static str,
        field: &'static str,
    },
}

/// Decodes one message into a JSON object.
pub fn message(desc: &'static Message, buf: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    let mut out = Map::new();
    for item in Fields::new(buf) {
        let (number, wire) = item?;
        let field = desc.field(number).ok_or(DecodeError::UnknownField {
            message: desc.name,
            number,
        })?;
        place(desc, field, wire, &mut out)?;
    }
    Ok(out)
}

fn place(
    desc: &'static Message,
    field: &Field,
    wire: WireValue<'_>,
    out: &mut Map<String, Value>,
) -> Result<(), DecodeError> {
    let key = field.json.to_string();
    match (field.kind, field.shape) {
        (Kind::StringMap | Kind::BytesMap | Kind::QuantityMap, _) => {
            let (k, v) = map_entry(desc, field, wire)?;
            let map = out.entry(key).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = map {
                map.insert(k, v);
            }
        }
        (Kind::Message(inner), Shape::Inline) => {
            out.extend(message(inner, bytes(desc, field, wire)?)?);
        }
        (_, Shape::Repeated) => {
            let v = scalar(desc, field, wire)?;
            let list = out.entry(key).or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = list {
                list.push(v);
            }
        }
        (_, Shape::Pointer) => {
            out.insert(key, scalar(desc, field, wire)?);
        }
        (_, _) => {
            let v = scalar(desc, field, wire)?;
            if !is_zero(&v) {
                out.insert(key, v);
            }
        }
    }
    Ok(())
}

/// Go's `omitempty` zero values; an empty object stays (`resources: {}`).
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Array(a) => a.is_empty(),
        Value::Object(_) => false,
    }
}

fn bytes<'a>(
    desc: &'static Message,
    field: &Field,
    wire: WireValue<'a>,
) -> Result<&'a [u8], DecodeError> {
    match wire {
        WireValue::Bytes(b) => Ok(b),
        _ => Err(DecodeError::WireType {
            message: desc.name,
            field: field.json,
        }),
    }
}

fn text(desc: &'static Message, field: &Field, b: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Utf8 {
        message: desc.name,
        field: field.json,
    })
}

fn scalar(
    desc: &'static Message,
    field: &Field,
    wire: WireValue<'_>,
) -> Result<Value, DecodeError> {
    let wrong = || DecodeError::WireType {
        message: desc.name,
        field: field.json,
    };
    Ok(match (field.kind, wire) {
        // Negative int32s are sign-extended to 64 bits on the wire.
        (Kind::Int, WireValue::Varint(n)) => Value::from(n as i64),
        (Kind::Bool, WireValue::Varint(n)) => Value::Bool(n != 0),
        (Kind::String, WireValue::Bytes(b)) => Value::String(text(desc, field, b)?),
        (Kind::Bytes, WireValue::Bytes(b)) => Value::String(base64_of(b)),
        (Kind::Message(inner), WireValue::Bytes(b)) => Value::Object(message(inner, b)?),
        (Kind::Time, WireValue::Bytes(b)) => time(b)?,
        (Kind::IntOrString, WireValue::Bytes(b)) => int_or_string(b)?,
        _ => return Err(wrong()),
    })
}

fn base64_of(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// `metav1.Time`: the zero time is sent as an empty message (JSON null).
fn time(buf: &[u8]) -> Result<Value, DecodeError> {
    let (mut seconds, mut nanos) = (0i64, 0u32);
    for item in Fields::new(buf) {
        match item? {
            (1, WireValue::Varint(n)) => seconds = n as i64,
            (2, WireValue::Varint(n)) => nanos = u32::try_from(n).unwrap_or(0),
            _ => {}
        }
    }
    if buf.is_empty() {
        return Ok(Value::Null);
    }
    Ok(chrono::DateTime::from_timestamp(seconds, nanos)
        .map(|t| Value::String(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
        .unwrap_or(Value::Null))
}

fn quantity(buf: &[u8]) -> Result<Value, DecodeError> {
    for item in Fields::new(buf) {
        if let (1, WireValue::Bytes(b)) = item? {
            return Ok(Value::String(String::from_utf8_lossy(b).into_owned()));
        }
    }
    Ok(Value::String("0".into()))
}

fn int_or_string(buf: &[u8]) -> Result<Value, DecodeError> {
    let (mut is_string, mut int, mut string) = (false, 0i64, String::new());
    for item in Fields::new(buf) {
        match item? {
            (1, WireValue::Varint(t)) => is_string = t == 1,
            (2, WireValue::Varint(n)) => int = n as i64,
            (3, WireValue::Bytes(b)) => string = String::from_utf8_lossy(b).into_owned(),
            _ => {}
        }
    }
    Ok(if is_string {
        Value::String(string)
    } else {
        Value::from(int)
    })
}

/// One `map<string, V>` entry: a message with key = 1 and value = 2.
fn map_entry(
    desc: &'static Message,
    field: &Field,
    wire: WireValue<'_>,
) -> Result<(String, Value), DecodeError> {
    let (mut key, mut value) = (String::new(), None);
    for item in Fields::new(bytes(desc, field, wire)?) {
        match item? {
            (1, WireValue::Bytes(b)) => key = text(desc, field, b)?,
            (2, WireValue::Bytes(b)) => {
                value = Some(match field.kind {
                    Kind::BytesMap => Value::String(base64_of(b)),
                    Kind::QuantityMap => quantity(b)?,
                    _ => Value::String(text(desc, field, b)?),
                })
            }
            _ => {}
        }
    }
    let empty = match field.kind {
        Kind::QuantityMap => Value::String("0".into()),
        _ => Value::String(String::new()),
    };
    Ok((key, value.unwrap_or(empty)))
}
