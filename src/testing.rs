//! What the unit tests share: records made from text, and a small seeded random generator for
//! the randomized cases, so a failure reproduces exactly.

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::batch::Batch;
use crate::input::{Cached, Location, Record};

/// A record of `json` read at `source:line`.
pub fn record(source: &str, line: u64, json: &str) -> Record {
    Record {
        json: RawValue::from_string(json.to_owned()).unwrap(),
        at: Location {
            source: Arc::from(source),
            line,
        },
        invalid: None,
        bytes: json.len() as u64 + 1,
        blank: false,
        cache: None,
    }
}

/// A record of `json` read at `source:line`, answered by the cache with `result`.
pub fn cached(source: &str, line: u64, json: &str, result: &str) -> Record {
    Record {
        cache: Some(Cached {
            key: [0; 16],
            result: Some(RawValue::from_string(result.to_owned()).unwrap()),
        }),
        ..record(source, line, json)
    }
}

/// The 0-based positions of a batch's records, from their line numbers.
pub fn positions(batch: &Batch) -> Vec<usize> {
    batch
        .records
        .iter()
        .map(|r| r.at.line as usize - 1)
        .collect()
}

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number in `0..bound` (bound > 0), from xorshift64*.
    pub fn below(&mut self, bound: u64) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound
    }
}
