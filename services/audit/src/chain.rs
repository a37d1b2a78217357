//! The hash chain, without I/O: how an entry is hashed, and how a sequence of stored
//! entries (and exported checkpoints) is verified.

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an entry says, in the order it is hashed. Read from a `log` row by its column
/// names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct EntryBody {
    pub seq: i64,
    pub message_id: String,
    pub at: String,
    pub source: String,
    pub channel: String,
    pub case_id: String,
    pub referral_id: Option<String>,
    pub recipient: String,
    pub purpose: String,
    pub decision: String,
    pub reason: Option<String>,
    pub categories: Vec<String>,
    pub basis: Vec<String>,
    pub delivery_message_id: Option<String>,
    /// The person who read, when the web front proved them. Left out of the hashed JSON
    /// when absent, so every entry written before it existed still verifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
}

/// An entry as stored: its body and the two hashes (a `log` row).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Entry {
    #[sqlx(flatten)]
    pub body: EntryBody,
    pub prev_hash: String,
    pub hash: String,
}

/// SHA-256 over the previous hash and the body's canonical JSON (fields in declaration
/// order, so the same body always gives the same bytes), hex-encoded.
pub fn entry_hash(prev_hash: &str, body: &EntryBody) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    // Serializing a plain struct of strings cannot fail; an empty body would still
    // hash deterministically.
    h.update(serde_json::to_vec(body).unwrap_or_default());
    hex::encode(h.finalize())
}

/// A signed (seq, hash) pair (a `checkpoints` row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub signed_at: String,
    /// ed25519 public key, hex.
    pub public_key: String,
    /// ed25519 signature of [`checkpoint_message`], hex.
    pub signature: String,
}

/// The bytes a checkpoint signs.
pub fn checkpoint_message(seq: i64, hash: &str) -> Vec<u8> {
    format!("himaya-disclosure-log:{seq}:{hash}").into_bytes()
}

/// The first problem found, naming the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tamper {
    #[error("entry {seq} was modified: its content no longer matches its hash")]
    Modified { seq: i64 },
    #[error("entry {seq} is missing: the log jumps from {before} to {seq_found}")]
    Missing {
        seq: i64,
        before: i64,
        seq_found: i64,
    },
    #[error("entry {seq} does not follow entry {before}: an entry was inserted, removed or reordered here")]
    Broken { seq: i64, before: i64 },
    #[error("checkpoint {seq} is not validly signed")]
    BadCheckpoint { seq: i64 },
    #[error("checkpoint {seq} does not match the log: entries up to {seq} were rewritten")]
    CheckpointMismatch { seq: i64 },
    #[error("the log ends at entry {last} but checkpoint {seq} was signed later: the tail was truncated")]
    Truncated { seq: i64, last: i64 },
}

impl Tamper {
    /// The first entry the problem concerns.
    pub fn seq(&self) -> i64 {
        match self {
            Tamper::Modified { seq }
            | Tamper::Missing { seq, .. }
            | Tamper::Broken { seq, .. }
            | Tamper::BadCheckpoint { seq }
            | Tamper::CheckpointMismatch { seq } => *seq,
            Tamper::Truncated { last, .. } => last + 1,
        }
    }

    /// What was found, as a stable code (for readers that word it themselves).
    pub fn code(&self) -> &'static str {
        match self {
            Tamper::Modified { .. } => "modified",
            Tamper::Missing { .. } => "missing",
            Tamper::Broken { .. } => "broken",
            Tamper::BadCheckpoint { .. } => "bad_checkpoint",
            Tamper::CheckpointMismatch { .. } => "checkpoint_mismatch",
            Tamper::Truncated { .. } => "truncated",
        }
    }
}

/// Checks entries given in `seq` order, feeding them one at a time so a log of any
/// length is verified in constant memory.
#[derive(Debug)]
pub struct Verifier {
    last_seq: i64,
    last_hash: String,
    /// `seq → hash` of the checkpoints still to meet.
    pending: std::collections::BTreeMap<i64, String>,
}

impl Verifier {
    /// A verifier that also holds the log to `checkpoints` (exported earlier).
    pub fn new(checkpoints: &[Checkpoint]) -> Result<Verifier, Tamper> {
        let mut pending = std::collections::BTreeMap::new();
        for c in checkpoints {
            if !signature_ok(c) {
                return Err(Tamper::BadCheckpoint { seq: c.seq });
            }
            pending.insert(c.seq, c.hash.clone());
        }
        Ok(Verifier {
            last_seq: 0,
            last_hash: GENESIS.to_owned(),
            pending,
        })
    }

    /// A verifier continuing after entry `last_seq` (whose hash is `last_hash`), already
    /// verified; `checkpoints` at or before it are not looked at again.
    pub fn resume(
        last_seq: i64,
        last_hash: &str,
        checkpoints: &[Checkpoint],
    ) -> Result<Verifier, Tamper> {
        let later: Vec<Checkpoint> = checkpoints
            .iter()
            .filter(|c| c.seq > last_seq)
            .cloned()
            .collect();
        let mut v = Verifier::new(&later)?;
        v.last_seq = last_seq;
        v.last_hash = last_hash.to_owned();
        Ok(v)
    }

    /// The last entry verified: its seq and hash (0 and [`GENESIS`] before the first).
    pub fn last(&self) -> (i64, &str) {
        (self.last_seq, &self.last_hash)
    }

    pub fn push(&mut self, e: &Entry) -> Result<(), Tamper> {
        let seq = e.body.seq;
        if seq != self.last_seq + 1 {
            return Err(if seq > self.last_seq + 1 {
                Tamper::Missing {
                    seq: self.last_seq + 1,
                    before: self.last_seq,
                    seq_found: seq,
                }
            } else {
                Tamper::Broken {
                    seq,
                    before: self.last_seq,
                }
            });
        }
        if entry_hash(&e.prev_hash, &e.body) != e.hash {
            return Err(Tamper::Modified { seq });
        }
        if e.prev_hash != self.last_hash {
            return Err(Tamper::Broken {
                seq,
                before: self.last_seq,
            });
        }
        if let Some(expected) = self.pending.remove(&seq) {
            if expected != e.hash {
                return Err(Tamper::CheckpointMismatch { seq });
            }
        }
        self.last_seq = seq;
        self.last_hash = e.hash.clone();
        Ok(())
    }

    /// After the last entry: every checkpoint must have been met. Returns the last seq.
    pub fn finish(self) -> Result<i64, Tamper> {
        match self.pending.keys().next() {
            Some(&seq) => Err(Tamper::Truncated {
                seq,
                last: self.last_seq,
            }),
            None => Ok(self.last_seq),
        }
    }
}

/// Whether a checkpoint's signature verifies with the public key it names.
pub fn signature_ok(c: &Checkpoint) -> bool {
    let (Ok(key), Ok(sig)) = (hex::decode(&c.public_key), hex::decode(&c.signature)) else {
        return false;
    };
    let (Ok(key), Ok(sig)) = (<[u8; 32]>::try_from(key), <[u8; 64]>::try_from(sig)) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&key) else {
        return false;
    };
    key.verify(
        &checkpoint_message(c.seq, &c.hash),
        &Signature::from_bytes(&sig),
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    fn chain(n: i64) -> Vec<Entry> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let body = EntryBody {
                    seq,
                    message_id: format!("msg_{seq}"),
                    at: "2026-11-22T09:30:00+00:00".into(),
                    source: "router".into(),
                    channel: "bus_delivery".into(),
                    case_id: "case_1".into(),
                    referral_id: None,
                    recipient: "health-cairo".into(),
                    purpose: "service_provision".into(),
                    decision: "permit".into(),
                    reason: None,
                    categories: vec!["health".into()],
                    basis: vec!["cns_1".into()],
                    delivery_message_id: None,
                    person: None,
                };
                let hash = entry_hash(&prev, &body);
                let e = Entry {
                    body,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                e
            })
            .collect()
    }

    fn verify(entries: &[Entry], checkpoints: &[Checkpoint]) -> Result<i64, Tamper> {
        let mut v = Verifier::new(checkpoints)?;
        for e in entries {
            v.push(e)?;
        }
        v.finish()
    }

    fn sign(key: &SigningKey, e: &Entry) -> Checkpoint {
        Checkpoint {
            seq: e.body.seq,
            hash: e.hash.clone(),
            signed_at: "2026-11-22T10:00:00+00:00".into(),
            public_key: hex::encode(key.verifying_key().to_bytes()),
            signature: hex::encode(
                key.sign(&checkpoint_message(e.body.seq, &e.hash))
                    .to_bytes(),
            ),
        }
    }

    #[test]
    fn every_kind_of_tampering_is_named_at_its_first_entry() {
        let good = chain(6);
        assert_eq!(verify(&good, &[]), Ok(6));

        let mut modified = good.clone();
        modified[2].body.recipient = "justice-cairo".into();
        assert_eq!(verify(&modified, &[]), Err(Tamper::Modified { seq: 3 }));

        let mut deleted = good.clone();
        deleted.remove(3);
        assert_eq!(verify(&deleted, &[]).unwrap_err().seq(), 4);

        // Inserted: a forged entry, validly hashed, with everything after renumbered.
        let mut inserted = good[..3].to_vec();
        let mut forged = good[3].clone();
        forged.body.message_id = "msg_forged".into();
        forged.hash = entry_hash(&forged.prev_hash, &forged.body);
        inserted.push(forged);
        for e in &good[3..] {
            let mut e = e.clone();
            e.body.seq += 1;
            e.hash = entry_hash(&e.prev_hash, &e.body);
            inserted.push(e);
        }
        assert_eq!(
            verify(&inserted, &[]),
            Err(Tamper::Broken { seq: 5, before: 4 })
        );

        // Reordered: two entries swapped, seq numbers rewritten to look in order.
        let mut reordered = good.clone();
        reordered.swap(1, 2);
        reordered[1].body.seq = 2;
        reordered[2].body.seq = 3;
        for e in &mut reordered[1..3] {
            e.hash = entry_hash(&e.prev_hash, &e.body);
        }
        assert_eq!(verify(&reordered, &[]).unwrap_err().seq(), 2);
    }

    #[test]
    fn a_resumed_verifier_checks_only_what_follows_and_still_catches_tampering() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let good = chain(6);
        let cp = sign(&key, &good[4]);
        let mut v = Verifier::resume(3, &good[2].hash, std::slice::from_ref(&cp)).unwrap();
        for e in &good[3..] {
            v.push(e).unwrap();
        }
        assert_eq!(v.last().0, 6);
        assert_eq!(v.finish(), Ok(6));
        // Resumed from a wrong hash: the next entry does not follow it.
        let mut v = Verifier::resume(3, GENESIS, &[]).unwrap();
        assert_eq!(v.push(&good[3]), Err(Tamper::Broken { seq: 4, before: 3 }));
        // A checkpoint past the end is a truncated tail, named by its code.
        let v = Verifier::resume(3, &good[2].hash, &[cp]).unwrap();
        let t = v.finish().unwrap_err();
        assert_eq!((t.code(), t.seq()), ("truncated", 4));
    }

    #[test]
    fn signed_checkpoints_catch_a_truncated_or_rewritten_tail() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let good = chain(6);
        let cp = sign(&key, &good[4]);
        assert_eq!(verify(&good, std::slice::from_ref(&cp)), Ok(6));
        assert_eq!(
            verify(&good[..3], std::slice::from_ref(&cp)),
            Err(Tamper::Truncated { seq: 5, last: 3 })
        );
        // A whole rewritten chain hashes consistently, but not to the signed hash.
        let mut rewritten = chain(6);
        rewritten[0].body.recipient = "someone-else".into();
        let mut prev = GENESIS.to_owned();
        for e in &mut rewritten {
            e.prev_hash = prev.clone();
            e.hash = entry_hash(&e.prev_hash, &e.body);
            prev = e.hash.clone();
        }
        assert_eq!(
            verify(&rewritten, std::slice::from_ref(&cp)),
            Err(Tamper::CheckpointMismatch { seq: 5 })
        );
        let mut forged = cp.clone();
        forged.seq = 6;
        assert_eq!(
            verify(&good, &[forged]),
            Err(Tamper::BadCheckpoint { seq: 6 })
        );
    }
}
