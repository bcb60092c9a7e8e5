//! Which keys go to which script call: on a Cluster every key of a call must share a slot.

use std::collections::HashMap;

use super::KEYS_PER_CALL;
use crate::key_codec::hash_tag;
use crate::store::{LiveSwapEntry, SwapEntry, WriteEntry};

/// Splits entries into script calls. On a Cluster every key of a call must share a slot, so
/// entries are grouped by hash tag's slot first.
pub(super) fn calls<E: Clone + Keyed>(entries: Vec<E>, cluster: bool) -> Vec<Vec<E>> {
    if !cluster {
        let mut out = Vec::new();
        let mut it = entries.into_iter().peekable();
        while it.peek().is_some() {
            out.push(it.by_ref().take(KEYS_PER_CALL).collect());
        }
        return out;
    }
    let mut by_slot: HashMap<u16, Vec<E>> = HashMap::new();
    for e in entries {
        by_slot.entry(slot(e.key())).or_default().push(e);
    }
    by_slot
        .into_values()
        .flat_map(|g| {
            g.chunks(KEYS_PER_CALL)
                .map(<[E]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `entries` in rounds in which no key repeats (a key's second entry goes to the second round,
/// and so on), each round in its original order. The write script compares every entry with
/// what the key held before the call, so one call must not hold a key twice. Rounds are written
/// one after another, so a repeated key's entries apply in their order, as the embedded store
/// applies them (and are counted alike). Keys are told apart by a hash: a collision only moves
/// an entry to a later round.
pub(super) fn distinct_rounds<E: Keyed>(entries: Vec<E>) -> Vec<Vec<E>> {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let hasher = BuildHasherDefault::<DefaultHasher>::default();
    let mut seen: HashMap<u64, usize> = HashMap::with_capacity(entries.len());
    let mut rounds: Vec<Vec<E>> = Vec::new();
    for e in entries {
        let n = seen.entry(hasher.hash_one(e.key())).or_insert(0);
        if rounds.len() <= *n {
            rounds.push(Vec::new());
        }
        rounds[*n].push(e);
        *n += 1;
    }
    rounds
}

/// An entry written under one key.
pub(super) trait Keyed {
    fn key(&self) -> &str;
}

impl Keyed for WriteEntry {
    fn key(&self) -> &str {
        &self.key
    }
}

impl Keyed for SwapEntry {
    fn key(&self) -> &str {
        &self.key
    }
}

impl Keyed for LiveSwapEntry {
    fn key(&self) -> &str {
        &self.key
    }
}

impl Keyed for String {
    fn key(&self) -> &str {
        self
    }
}

impl<E: Keyed> Keyed for (usize, E) {
    fn key(&self) -> &str {
        self.1.key()
    }
}

/// The Redis Cluster slot of a key: CRC16 (XMODEM) of its hash tag, mod 16384.
pub fn slot(key: &str) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(hash_tag(key).as_bytes()) % 16384
}
