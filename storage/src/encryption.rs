//! Encryption at rest: the `Keyring` of AES-256-GCM keys (`ID:HEX64` lines), the key record that names the
//! key each encrypted segment was written with (`<base>.keyid`), and the sealing and opening of stored
//! batches. docs/FORMAT.md ("Encrypted segments") gives every byte.
//!
//! A stored encrypted batch keeps the readable Kafka v2 header that recovery, the indexes and truncation
//! walk (offsets, lengths, epoch, timestamps, producer fields, record count), so none of them changes; only
//! the records section is replaced by `nonce || ciphertext || tag`, and the header's CRC-32C covers the
//! stored bytes as for any batch. The GCM tag authenticates the header too (it is the AAD).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rill_proto::batch::{BATCH_HEADER_BYTES, BatchHeader};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::backend::Backend;
use crate::error::StorageError;

/// Bytes of a key: AES-256.
pub const KEY_BYTES: usize = 32;
/// Longest key id: ids are names an operator types, and the key record stores one in a bounded field.
pub const KEY_ID_BYTES_MAX: usize = 64;
/// Most keys a keyring holds: one per rotation kept readable; far more than any deployment rotates through.
pub const KEYRING_KEYS_MAX: usize = 1024;
/// A fresh random 96-bit nonce per batch (GCM's native nonce size).
pub const NONCE_BYTES: usize = 12;
/// GCM authentication tag.
pub const TAG_BYTES: usize = 16;
/// How many bytes encryption adds to a stored batch.
pub const ENCRYPTED_BATCH_OVERHEAD_BYTES: usize = NONCE_BYTES + TAG_BYTES;
/// Attribute bit 14 of a stored batch: its records section is encrypted. Kafka defines bits 0-6 only, and the
/// bit never leaves storage (it is cleared when a batch is decrypted), so a batch says what it is even apart
/// from its segment's key record.
pub(crate) const ATTR_STORED_ENCRYPTED: i16 = 0x4000;
/// Bytes of a key fingerprint in a key record.
pub const FINGERPRINT_BYTES: usize = 8;

const CRC_AT: usize = 17;
const CRC_COVERED_FROM: usize = 21;
const BATCH_LENGTH_AT: usize = 8;
const ATTRIBUTES_AT: usize = 21;
/// The AAD: the stored header without its CRC (which covers the ciphertext, so it is computed after sealing).
const AAD_BYTES: usize = BATCH_HEADER_BYTES - 4;

/// The encryption a topic asks for (topic key `encryption`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encryption {
    /// New segments are stored in plaintext.
    #[default]
    None,
    /// New segments are encrypted with the keyring's active key.
    Aes256Gcm,
}

/// One key: its id, its fingerprint (what a key record stores to recognise it) and the AEAD key.
pub struct SegmentKey {
    id: String,
    fingerprint: [u8; FINGERPRINT_BYTES],
    key: LessSafeKey,
    nonces: NonceSource,
}

impl SegmentKey {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn fingerprint(&self) -> [u8; FINGERPRINT_BYTES] {
        self.fingerprint
    }

    fn next_nonce(&self) -> [u8; NONCE_BYTES] {
        let mut nonce = [0u8; NONCE_BYTES];
        match &self.nonces {
            NonceSource::System(rng) => {
                // The OS random source failing is not an operating condition we can carry on from: writing
                // without a fresh nonce would break GCM's guarantee.
                rng.fill(&mut nonce).expect("the OS random number generator failed");
            }
            NonceSource::Counter { prefix, next } => {
                nonce[..4].copy_from_slice(&prefix.to_be_bytes());
                nonce[4..].copy_from_slice(&next.fetch_add(1, Ordering::Relaxed).to_be_bytes());
            }
        }
        nonce
    }

    /// Encrypts one batch given as its (stamped) 61-byte plaintext header and records section: returns the
    /// stored form (docs/FORMAT.md, "Encrypted batch"), whose CRC covers the stored bytes.
    pub(crate) fn seal(&self, head: &[u8], records: &[u8]) -> Vec<u8> {
        assert_eq!(head.len(), BATCH_HEADER_BYTES, "a batch header is 61 bytes");
        let mut stored = Vec::with_capacity(BATCH_HEADER_BYTES + ENCRYPTED_BATCH_OVERHEAD_BYTES + records.len());
        stored.extend_from_slice(head);
        let length = u32::from_be_bytes(head[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].try_into().expect("4 bytes"));
        let stored_length = length + ENCRYPTED_BATCH_OVERHEAD_BYTES as u32;
        stored[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&stored_length.to_be_bytes());
        let attributes = i16::from_be_bytes([head[ATTRIBUTES_AT], head[ATTRIBUTES_AT + 1]]) | ATTR_STORED_ENCRYPTED;
        stored[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        let nonce = self.next_nonce();
        stored.extend_from_slice(&nonce);
        stored.extend_from_slice(records);
        let aad = aad_of(&stored);
        let at = BATCH_HEADER_BYTES + NONCE_BYTES;
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut stored[at..])
            .expect("AES-GCM seals any batch below 2^31 bytes");
        stored.extend_from_slice(tag.as_ref());
        let crc = crc32c::crc32c(&stored[CRC_COVERED_FROM..]);
        stored[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(stored.len(), 12 + stored_length as usize, "the stored length covers the whole batch");
        stored
    }
}

impl fmt::Debug for SegmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key material.
        write!(f, "SegmentKey({}, fingerprint {})", self.id, hex(&self.fingerprint))
    }
}

/// Where nonces come from. Production keyrings draw each from the OS; tests and the fuzz targets use a
/// seeded counter so that their files are the same bytes on every run.
enum NonceSource {
    System(SystemRandom),
    Counter { prefix: u32, next: AtomicU64 },
}

/// The keys a broker holds: every key still needed to read old segments, and the active one that new
/// segments are written with.
pub struct Keyring {
    keys: BTreeMap<String, Arc<SegmentKey>>,
    active: Arc<SegmentKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring").field("active", &self.active.id).field("keys", &self.keys.values()).finish()
    }
}

/// Two keyrings are equal when they hold the same key ids with the same fingerprints and the same active id,
/// which is what a `LogConfig` comparison needs to know.
impl PartialEq for Keyring {
    fn eq(&self, other: &Keyring) -> bool {
        self.active.id == other.active.id
            && self.keys.len() == other.keys.len()
            && self.keys.values().zip(other.keys.values()).all(|(a, b)| a.id == b.id && a.fingerprint == b.fingerprint)
    }
}

impl Eq for Keyring {}

/// Checks a key id: 1 to 64 ASCII letters, digits, `.`, `_` or `-`, so it is safe in logs and file records.
pub fn check_key_id(id: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if id.is_empty() || id.len() > KEY_ID_BYTES_MAX || !id.chars().all(ok_char) {
        return Err(format!("key id '{id}' must be 1 to {KEY_ID_BYTES_MAX} ASCII letters, digits, '.', '_' or '-'"));
    }
    Ok(())
}

/// Parses one `ID:HEX64` key (64 hex digits: 32 bytes).
pub fn parse_key(text: &str) -> Result<(String, [u8; KEY_BYTES]), String> {
    let (id, hex_key) = text.trim().split_once(':').ok_or("a key is written ID:HEX64")?;
    check_key_id(id)?;
    let hex_key = hex_key.trim();
    if hex_key.len() != 2 * KEY_BYTES || !hex_key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("key '{id}' must be {} hex digits ({KEY_BYTES} bytes)", 2 * KEY_BYTES));
    }
    let mut key = [0u8; KEY_BYTES];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex_key[2 * i..2 * i + 2], 16).expect("checked hex digits");
    }
    Ok((id.to_string(), key))
}

/// The fingerprint a key record stores: the first 8 bytes of SHA-256 over a fixed label and the key. It
/// recognises the right key without revealing it (a 64-bit hash of a 256-bit secret).
fn fingerprint_of(key: &[u8; KEY_BYTES]) -> [u8; FINGERPRINT_BYTES] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"rill segment key fingerprint v1\0");
    context.update(key);
    let digest = context.finish();
    digest.as_ref()[..FINGERPRINT_BYTES].try_into().expect("SHA-256 is 32 bytes")
}

impl Keyring {
    /// A keyring of `keys`, in the order given; the active key is `active` if named, else the last one.
    ///
    /// # Errors
    ///
    /// No keys, too many, a bad or repeated id, or an `active` id that is not among them.
    pub fn new(keys: Vec<(String, [u8; KEY_BYTES])>, active: Option<&str>) -> Result<Keyring, String> {
        Keyring::with_nonces(keys, active, None)
    }

    /// As `new`, but nonces come from a counter that starts at `seed`: for tests and fuzz targets, whose
    /// files must be the same bytes on every run. Never for data that matters: two logs under one key with the
    /// same seed would reuse nonces.
    #[doc(hidden)]
    pub fn with_counter_nonces(
        keys: Vec<(String, [u8; KEY_BYTES])>,
        active: Option<&str>,
        seed: u32,
    ) -> Result<Keyring, String> {
        Keyring::with_nonces(keys, active, Some(seed))
    }

    /// `counter_seed`: None draws nonces from the OS, Some from a counter per key starting at the seed.
    fn with_nonces(
        keys: Vec<(String, [u8; KEY_BYTES])>,
        active: Option<&str>,
        counter_seed: Option<u32>,
    ) -> Result<Keyring, String> {
        if keys.is_empty() {
            return Err("no encryption key given".into());
        }
        if keys.len() > KEYRING_KEYS_MAX {
            return Err(format!("{} keys given, at most {KEYRING_KEYS_MAX} are allowed", keys.len()));
        }
        let last = keys.last().expect("not empty").0.clone();
        let mut map = BTreeMap::new();
        for (id, material) in keys {
            check_key_id(&id)?;
            let unbound = UnboundKey::new(&AES_256_GCM, &material).map_err(|_| "AES-256 key rejected by ring")?;
            if map.contains_key(&id) {
                return Err(format!("key id '{id}' is given twice"));
            }
            let nonces = match counter_seed {
                None => NonceSource::System(SystemRandom::new()),
                Some(prefix) => NonceSource::Counter { prefix, next: AtomicU64::new(0) },
            };
            let key = SegmentKey { fingerprint: fingerprint_of(&material), key: LessSafeKey::new(unbound), id, nonces };
            map.insert(key.id.clone(), Arc::new(key));
        }
        let active_id = active.unwrap_or(&last);
        let active = map.get(active_id).cloned().ok_or_else(|| {
            let known: Vec<&str> = map.keys().map(String::as_str).collect();
            format!("active key id '{active_id}' is not among the keys ({})", known.join(", "))
        })?;
        Ok(Keyring { keys: map, active })
    }

    /// Parses a key file: one `ID:HEX64` key per line; blank lines and lines starting with `#` are skipped.
    ///
    /// # Errors
    ///
    /// As `new`, with the line number of a bad line.
    pub fn parse(text: &str, active: Option<&str>) -> Result<Keyring, String> {
        let mut keys = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.push(parse_key(line).map_err(|e| format!("line {}: {e}", number + 1))?);
        }
        Keyring::new(keys, active)
    }

    /// The key new segments are written with.
    pub fn active(&self) -> &Arc<SegmentKey> {
        &self.active
    }

    pub fn get(&self, id: &str) -> Option<&Arc<SegmentKey>> {
        self.keys.get(id)
    }

    /// Every key id, sorted.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.keys().map(String::as_str).collect()
    }
}

/// The AAD of a stored batch: its header but the CRC field.
fn aad_of(stored: &[u8]) -> [u8; AAD_BYTES] {
    let mut aad = [0u8; AAD_BYTES];
    aad[..CRC_AT].copy_from_slice(&stored[..CRC_AT]);
    aad[CRC_AT..].copy_from_slice(&stored[CRC_COVERED_FROM..BATCH_HEADER_BYTES]);
    aad
}

/// Decrypts one stored batch (whose CRC the caller checked) onto the end of `out`, leaving there the batch
/// exactly as it was before `seal`: the plaintext length, attributes and CRC. On an error `out` is as before.
pub(crate) fn open_batch(key: &SegmentKey, stored: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let header = BatchHeader::parse(stored).map_err(|e| e.to_string())?;
    if header.attributes & ATTR_STORED_ENCRYPTED == 0 {
        return Err("batch is stored in plaintext inside an encrypted segment".into());
    }
    if stored.len() != header.size() || stored.len() < BATCH_HEADER_BYTES + ENCRYPTED_BATCH_OVERHEAD_BYTES {
        return Err(format!("encrypted batch of {} bytes is too short for its nonce and tag", stored.len()));
    }
    let nonce: [u8; NONCE_BYTES] =
        stored[BATCH_HEADER_BYTES..BATCH_HEADER_BYTES + NONCE_BYTES].try_into().expect("12 bytes");
    let start = out.len();
    out.extend_from_slice(&stored[..BATCH_HEADER_BYTES]);
    out.extend_from_slice(&stored[BATCH_HEADER_BYTES + NONCE_BYTES..]);
    let aad = aad_of(stored);
    let opened = key.key.open_in_place(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut out[start + BATCH_HEADER_BYTES..],
    );
    let plain_len = match opened {
        Ok(plain) => plain.len(),
        Err(ring::error::Unspecified) => {
            out.truncate(start);
            return Err(format!(
                "batch at offset {} fails authentication: the key is not the one it was written with, or the \
                 bytes were altered",
                header.base_offset
            ));
        }
    };
    out.truncate(start + BATCH_HEADER_BYTES + plain_len);
    let batch = &mut out[start..];
    let length = header.batch_length - ENCRYPTED_BATCH_OVERHEAD_BYTES as u32;
    batch[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    let attributes = header.attributes & !ATTR_STORED_ENCRYPTED;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_COVERED_FROM..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

pub(crate) const KEY_RECORD_SUFFIX: &str = "keyid";
const KEY_RECORD_MAGIC: &[u8; 8] = b"RILLSKEY";
const KEY_RECORD_VERSION: u16 = 1;
/// Algorithm code of AES-256-GCM in a key record.
const ALGORITHM_AES_256_GCM: u16 = 1;
/// Magic, version, algorithm, fingerprint, id length.
const KEY_RECORD_FIXED_BYTES: usize = 8 + 2 + 2 + FINGERPRINT_BYTES + 2;

/// What a segment's key record says: the id and fingerprint of the key its batches were written with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub key_id: String,
    pub fingerprint: [u8; FINGERPRINT_BYTES],
}

impl KeyRecord {
    pub fn of(key: &SegmentKey) -> KeyRecord {
        KeyRecord { key_id: key.id.clone(), fingerprint: key.fingerprint }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(KEY_RECORD_FIXED_BYTES + self.key_id.len() + 4);
        out.extend_from_slice(KEY_RECORD_MAGIC);
        out.extend_from_slice(&KEY_RECORD_VERSION.to_be_bytes());
        out.extend_from_slice(&ALGORITHM_AES_256_GCM.to_be_bytes());
        out.extend_from_slice(&self.fingerprint);
        out.extend_from_slice(&(self.key_id.len() as u16).to_be_bytes());
        out.extend_from_slice(self.key_id.as_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes a key record, checking every field; the error says what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<KeyRecord, String> {
        if bytes.len() < KEY_RECORD_FIXED_BYTES + 4 {
            return Err(format!("{} bytes, shorter than any key record", bytes.len()));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored_crc = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
        if crc32c::crc32c(body) != stored_crc {
            return Err("CRC mismatch".into());
        }
        if &body[..8] != KEY_RECORD_MAGIC {
            return Err("bad magic".into());
        }
        let version = u16::from_be_bytes([body[8], body[9]]);
        if version != KEY_RECORD_VERSION {
            return Err(format!("version {version}, expected {KEY_RECORD_VERSION}"));
        }
        let algorithm = u16::from_be_bytes([body[10], body[11]]);
        if algorithm != ALGORITHM_AES_256_GCM {
            return Err(format!("unknown algorithm {algorithm}"));
        }
        let fingerprint = body[12..12 + FINGERPRINT_BYTES].try_into().expect("8 bytes");
        let id_len = usize::from(u16::from_be_bytes([body[20], body[21]]));
        if body.len() != KEY_RECORD_FIXED_BYTES + id_len {
            return Err(format!("key id length {id_len} does not match the record's size"));
        }
        let key_id = std::str::from_utf8(&body[KEY_RECORD_FIXED_BYTES..]).map_err(|_| "key id is not UTF-8")?;
        check_key_id(key_id)?;
        Ok(KeyRecord { key_id: key_id.to_string(), fingerprint })
    }
}

/// Reads the key record of a segment: None when the segment has none (it is stored in plaintext).
///
/// # Errors
///
/// `Corrupt` when the record is damaged (the segment is then never served, nor truncated), `Io`.
pub(crate) fn read_key_record(
    backend: &dyn Backend,
    path: &Path,
    base_offset: u64,
) -> Result<Option<KeyRecord>, StorageError> {
    if !backend.exists(path).map_err(|e| StorageError::io("stat", path, e))? {
        return Ok(None);
    }
    let file = backend.open(path, false).map_err(|e| StorageError::io("open key record", path, e))?;
    let len = file.len().map_err(|e| StorageError::io("stat key record", path, e))?;
    // A record holds at most 94 bytes; a longer file is damage, refused without reading it all.
    let bytes = file.read(0, len.min(4096) as usize).map_err(|e| StorageError::io("read key record", path, e))?;
    KeyRecord::decode(&bytes).map(Some).map_err(|reason| StorageError::Corrupt {
        segment: path.to_path_buf(),
        offset: base_offset,
        reason: format!("key record unreadable ({reason}); the segment is not served until it is restored"),
    })
}

/// Finds the key a segment's record names in `keyring`, checking its fingerprint.
///
/// # Errors
///
/// `Encryption` when no keyring is loaded, the id is unknown, or the key under that id is another key.
pub(crate) fn resolve_key(
    record: &KeyRecord,
    keyring: Option<&Keyring>,
    segment: &Path,
) -> Result<Arc<SegmentKey>, StorageError> {
    let error = |reason: String| StorageError::Encryption {
        segment: segment.to_path_buf(),
        key_id: record.key_id.clone(),
        reason,
    };
    let Some(keyring) = keyring else {
        return Err(error("no encryption key is loaded (--encryption-key-file or RILL_ENCRYPTION_KEY)".into()));
    };
    let Some(key) = keyring.get(&record.key_id) else {
        return Err(error(format!("the key id is not in the keyring (known: {})", keyring.ids().join(", "))));
    };
    if key.fingerprint != record.fingerprint {
        return Err(error(format!(
            "the loaded key of that id has fingerprint {}, the segment was written with {}: wrong key",
            hex(&key.fingerprint),
            hex(&record.fingerprint)
        )));
    }
    Ok(Arc::clone(key))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a segment's key record lives.
pub(crate) fn key_record_path(log_path: &Path) -> PathBuf {
    log_path.with_extension(KEY_RECORD_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_proto::batch::{self, BatchBuilder};

    fn keyring() -> Keyring {
        Keyring::with_counter_nonces(vec![("k1".into(), [7; 32]), ("k2".into(), [9; 32])], None, 1).unwrap()
    }

    #[test]
    fn keys_parse_from_a_file_and_the_last_is_active_unless_named() {
        let text = format!("# keys\nold:{}\n\nnew:{}\n", "01".repeat(32), "ab".repeat(32));
        let ring = Keyring::parse(&text, None).unwrap();
        assert_eq!((ring.active().id(), ring.ids()), ("new", vec!["new", "old"]));
        assert_eq!(Keyring::parse(&text, Some("old")).unwrap().active().id(), "old");
        for (bad, needle) in [
            ("k1:abcd", "64 hex digits"),
            (&*format!("k1{}", "00".repeat(32)), "ID:HEX64"),
            (&*format!("bad id:{}", "00".repeat(32)), "key id"),
            (&*format!("a:{0}\na:{0}", "00".repeat(32)), "twice"),
            ("", "no encryption key"),
        ] {
            let err = Keyring::parse(bad, None).unwrap_err();
            assert!(err.contains(needle), "{bad:?}: {err}");
        }
        let err = Keyring::parse(&text, Some("gone")).unwrap_err();
        assert!(err.contains("gone") && err.contains("old"), "{err}");
        assert!(!format!("{ring:?}").contains("abab"), "Debug never prints key material");
    }

    #[test]
    fn a_sealed_batch_opens_back_to_the_exact_original_bytes() {
        let ring = keyring();
        let mut builder = BatchBuilder::new();
        builder.push(1_700_000_000_000, Some(b"key"), Some(b"the plaintext value"), &[]);
        let mut original = builder.finish().to_vec();
        batch::set_base_offset(&mut original, 42);
        batch::set_partition_leader_epoch(&mut original, 3);
        let stored = ring.active().seal(&original[..61], &original[61..]);
        assert_eq!(stored.len(), original.len() + ENCRYPTED_BATCH_OVERHEAD_BYTES);
        batch::check_crc(&stored).expect("the stored CRC covers the stored bytes");
        let header = BatchHeader::parse(&stored).unwrap();
        assert_eq!((header.base_offset, header.partition_leader_epoch, header.record_count), (42, 3, 1));
        assert!(!stored.windows(9).any(|w| w == b"plaintext"), "the value is not readable");
        let mut out = Vec::new();
        open_batch(ring.active(), &stored, &mut out).unwrap();
        assert_eq!(out, original);
        assert!(open_batch(ring.get("k1").unwrap(), &stored, &mut out).is_err(), "another key fails the tag");
        assert_eq!(out, original, "a failed open leaves the buffer as it was");
        // The header is authenticated: a changed epoch (outside the CRC) fails the tag.
        let mut altered = stored.clone();
        altered[15] ^= 1;
        let err = open_batch(ring.active(), &altered, &mut Vec::new()).unwrap_err();
        assert!(err.contains("authentication"), "{err}");
    }

    #[test]
    fn nonces_never_repeat_within_a_keyring() {
        let ring = Keyring::new(vec![("k".into(), [1; 32])], None).unwrap();
        let nonces: std::collections::BTreeSet<_> = (0..1000).map(|_| ring.active().next_nonce()).collect();
        assert_eq!(nonces.len(), 1000);
        let counter = keyring();
        assert_ne!(counter.active().next_nonce(), counter.active().next_nonce());
    }

    #[test]
    fn key_records_round_trip_and_refuse_damage() {
        let record = KeyRecord::of(keyring().active());
        let bytes = record.encode();
        assert_eq!(bytes.len(), KEY_RECORD_FIXED_BYTES + 2 + 4);
        assert_eq!(KeyRecord::decode(&bytes).unwrap(), record);
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            assert!(KeyRecord::decode(&bad).is_err(), "flipped byte {at}");
        }
        assert!(KeyRecord::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn a_record_resolves_only_to_the_same_key() {
        let ring = keyring();
        let path = Path::new("/d/00000000000000000000.log");
        let record = KeyRecord::of(ring.get("k1").unwrap());
        assert_eq!(resolve_key(&record, Some(&ring), path).unwrap().id(), "k1");
        let other = Keyring::new(vec![("k1".into(), [8; 32])], None).unwrap();
        let err = resolve_key(&record, Some(&other), path).unwrap_err().to_string();
        assert!(err.contains("wrong key") && err.contains("k1") && err.contains("00000000000000000000.log"), "{err}");
        let err = resolve_key(&KeyRecord { key_id: "k3".into(), ..record.clone() }, Some(&ring), path).unwrap_err();
        assert!(err.to_string().contains("not in the keyring"), "{err}");
        let err = resolve_key(&record, None, path).unwrap_err();
        assert!(err.to_string().contains("no encryption key"), "{err}");
    }
}
