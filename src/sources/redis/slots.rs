//! Redis Cluster's key → slot → node mapping: the CRC16 hash slot of a key
//! (with `{hash tags}`), which arguments of a command are keys, the slot
//! map from `CLUSTER SLOTS`, and `MOVED`/`ASK` redirections.

use ::redis::{Arg, Cmd, Value};

/// Slots in a Redis Cluster.
pub(super) const SLOTS: usize = 16384;

/// A node's address, as the cluster names it.
pub(super) type Address = (String, u16);

/// CRC16/XMODEM (polynomial 0x1021, initial value 0), the checksum Redis
/// Cluster hashes keys with.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for b in bytes {
        crc ^= u16::from(*b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A key's hash slot: only the part between the first `{` and the next `}`
/// is hashed when that part is not empty, so keys can be kept together.
pub(super) fn hash_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|b| *b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|b| *b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % SLOTS as u16
}

/// The keys a command names, for the commands the sources send.
fn command_keys(cmd: &Cmd) -> Vec<&[u8]> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .filter_map(|a| match a {
            Arg::Simple(b) => Some(b),
            _ => None,
        })
        .collect();
    let Some(name) = args.first().map(|n| n.to_ascii_uppercase()) else {
        return vec![];
    };
    match name.as_slice() {
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            let n = args
                .get(2)
                .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
                .unwrap_or(0);
            args.iter().skip(3).take(n).copied().collect()
        }
        b"XINFO" | b"OBJECT" | b"MEMORY" => args.get(2).copied().into_iter().collect(),
        b"MGET" | b"EXISTS" | b"TOUCH" => args[1..].to_vec(),
        b"ASKING" | b"PING" | b"CLUSTER" | b"SCRIPT" | b"INFO" | b"ROLE" => vec![],
        _ => args.get(1).copied().into_iter().collect(),
    }
}

/// Why a command cannot be routed to one slot.
#[derive(Debug, PartialEq)]
pub(super) struct CrossSlot;

/// The slot a command's keys are in; `None` for a command without keys.
pub(super) fn command_slot(cmd: &Cmd) -> Result<Option<u16>, CrossSlot> {
    let mut slot = None;
    for key in command_keys(cmd) {
        let s = hash_slot(key);
        match slot {
            None => slot = Some(s),
            Some(prev) if prev != s => return Err(CrossSlot),
            Some(_) => {}
        }
    }
    Ok(slot)
}

/// Which master serves each slot.
#[derive(Default)]
pub(super) struct SlotMap {
    /// Masters, each once.
    pub(super) masters: Vec<Address>,
    /// Per slot, an index into `masters` (`None`: no node serves it).
    slots: Vec<Option<usize>>,
}

impl SlotMap {
    pub(super) fn is_empty(&self) -> bool {
        self.masters.is_empty()
    }

    pub(super) fn master_of(&self, slot: u16) -> Option<&Address> {
        let i = (*self.slots.get(usize::from(slot))?)?;
        self.masters.get(i)
    }

    /// The map a `CLUSTER SLOTS` reply describes; `asked` is the host of the
    /// node that answered (a node whose address is empty is that host).
    pub(super) fn from_cluster_slots(reply: &Value, asked: &str) -> Result<SlotMap, String> {
        let Value::Array(ranges) = reply else {
            return Err("CLUSTER SLOTS answered with something other than a list".into());
        };
        let mut map = SlotMap {
            masters: vec![],
            slots: vec![None; SLOTS],
        };
        for range in ranges {
            let (start, end, master) = parse_range(range, asked)?;
            let i = match map.masters.iter().position(|m| *m == master) {
                Some(i) => i,
                None => {
                    map.masters.push(master);
                    map.masters.len() - 1
                }
            };
            for s in start..=end {
                map.slots[s] = Some(i);
            }
        }
        Ok(map)
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// One `[start, end, [host, port, id, ...], replicas...]` entry.
fn parse_range(range: &Value, asked: &str) -> Result<(usize, usize, Address), String> {
    let bad = || "CLUSTER SLOTS answered with a malformed slot range".to_string();
    let Value::Array(items) = range else {
        return Err(bad());
    };
    let (Some(start), Some(end), Some(Value::Array(node))) = (
        items.first().and_then(int),
        items.get(1).and_then(int),
        items.get(2),
    ) else {
        return Err(bad());
    };
    let host = node.first().and_then(text).ok_or_else(bad)?;
    let port = node
        .get(1)
        .and_then(int)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(bad)?;
    let in_range = |s: i64| usize::try_from(s).ok().filter(|s| *s < SLOTS);
    let (Some(start), Some(end)) = (in_range(start), in_range(end)) else {
        return Err(bad());
    };
    if start > end {
        return Err(bad());
    }
    // "" and "?" mean: the address of the node that answered.
    let host = if host.is_empty() || host == "?" {
        asked.to_string()
    } else {
        host
    };
    Ok((start, end, (host, port)))
}

/// A reply that sends the command elsewhere.
#[derive(Debug, PartialEq)]
pub(super) enum Redirect {
    /// The slot lives on this node now: ask it, and refresh the map.
    Moved(Address),
    /// This one key is being migrated to this node: ask it once, after `ASKING`.
    Ask(Address),
}

/// The redirection an error reply (`MOVED 3999 127.0.0.1:6381`) asks for.
pub(super) fn redirect(code: &str, detail: Option<&str>) -> Option<Redirect> {
    let target = detail?.split_whitespace().nth(1)?;
    let (host, port) = target.rsplit_once(':')?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = port.parse().ok()?;
    match code {
        "MOVED" => Some(Redirect::Moved((host, port))),
        "ASK" => Some(Redirect::Ask((host, port))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // The examples of the Redis Cluster specification, and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(hash_slot(b"foo"), 12182);
        assert_eq!(hash_slot(b"{user1000}.following"), hash_slot(b"user1000"));
        assert_eq!(hash_slot(b"foo{}{bar}"), hash_slot(b"foo{}{bar}"));
        assert_ne!(hash_slot(b"foo{}{bar}"), hash_slot(b"bar"));
        assert_eq!(hash_slot(b"foo{{bar}}zap"), hash_slot(b"{bar"));
    }

    #[test]
    fn keys_of_the_commands_the_sources_send() {
        let mut c = ::redis::cmd("LLEN");
        c.arg("a");
        assert_eq!(command_slot(&c), Ok(Some(hash_slot(b"a"))));
        let mut c = ::redis::cmd("XINFO");
        c.arg("GROUPS").arg("s");
        assert_eq!(command_slot(&c), Ok(Some(hash_slot(b"s"))));
        let mut c = ::redis::cmd("EVALSHA");
        c.arg("abc").arg(2).arg("{q}a").arg("{q}b").arg("argv");
        assert_eq!(command_slot(&c), Ok(Some(hash_slot(b"q"))));
        let mut c = ::redis::cmd("EVALSHA");
        c.arg("abc").arg(2).arg("q").arg("unacked");
        assert_eq!(command_slot(&c), Err(CrossSlot));
        assert_eq!(command_slot(&::redis::cmd("ASKING")), Ok(None));
    }

    #[test]
    fn redirects_parse() {
        assert_eq!(
            redirect("MOVED", Some("3999 127.0.0.1:6381")),
            Some(Redirect::Moved(("127.0.0.1".into(), 6381)))
        );
        assert_eq!(
            redirect("ASK", Some("3999 [::1]:6381")),
            Some(Redirect::Ask(("::1".into(), 6381)))
        );
        assert_eq!(redirect("WRONGTYPE", Some("Operation against")), None);
    }
}
