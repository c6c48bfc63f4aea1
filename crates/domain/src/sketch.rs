//! Distinct-count sketches: HyperLogLog, mergeable, in the storage format of PostgreSQL's
//! `hll` extension (postgresql-hll, schema version 1), so PostgreSQL can build and merge them
//! in SQL and this process reads, writes and estimates the very same bytes.
//!
//! - **Hash.** A value is hashed with MurmurHash3 x64 128 (seed 0), its first 64-bit half:
//!   what the extension's `hll_hash_text` computes over the text's bytes. Fixed and
//!   documented, so every adapter and every release gets the same sketch for the same values.
//! - **Explicit, then registers.** A sketch holds the hashes themselves, sorted, while there are
//!   at most [`EXPLICIT_MAX`] (the extension's automatic threshold for these parameters, the
//!   most that fit in the space of the registers): up to there, a count is **exact**. Past it,
//!   it holds 2^[`LOG2M`] registers of [`REGWIDTH`] bits, each the largest rank seen among the
//!   hashes whose low bits select it, as the extension does.
//! - **Merge.** The union of two sketches is the sketch of the union of their values: explicit
//!   sets merge (and turn into registers past the threshold), registers take the maximum.
//!   Merging is associative and commutative, so any range and grouping is a merge of stored
//!   sketches.
//! - **Estimate.** Explicit: the number of hashes. Registers: Ertl's improved estimator
//!   ("New cardinality estimation algorithms for HyperLogLog sketches", 2017), which needs no
//!   empirical bias tables and has no bias at the small-range switch where the classic
//!   estimator (the extension's `hll_cardinality`) has some: over sweeps of 2,600 to 400,000
//!   values in steps of 997, four seeds, the classic estimator's worst relative error was 2.4
//!   to 3.1 %, always at about 80,000 (its switch from linear counting, 2.5 times the
//!   registers), and this one's 0.85 to 1.04 %. Its standard error is 1.04/sqrt(2^15), about
//!   0.57 %. So estimates are made here, never with `hll_cardinality`.

use std::cmp::Ordering;

/// Log2 of the number of registers.
pub const LOG2M: u8 = 15;
/// Bits per register.
pub const REGWIDTH: u8 = 5;
/// The most hashes a sketch holds explicitly (and counts exactly): the extension's automatic
/// threshold, as many 8-byte hashes as fit in the registers' bytes.
pub const EXPLICIT_MAX: usize = (REGISTERS * REGWIDTH as usize).div_ceil(8) / 8;

const REGISTERS: usize = 1 << LOG2M;
/// The largest register value.
const REGISTER_MAX: u8 = (1 << REGWIDTH) - 1;

/// Schema version 1, as the extension writes it.
const VERSION: u8 = 1;
const TYPE_EMPTY: u8 = 1;
const TYPE_EXPLICIT: u8 = 2;
const TYPE_SPARSE: u8 = 3;
const TYPE_FULL: u8 = 4;
/// The second header byte: register width minus one, and log2 of the register count.
const PARAMETERS: u8 = ((REGWIDTH - 1) << 5) | LOG2M;
/// The third header byte: sparse output on, and the explicit threshold automatic (63).
const SETTINGS: u8 = (1 << 6) | 63;

/// The 64-bit hash of `value` that sketches count: MurmurHash3 x64 128 with seed 0, first half.
pub fn hash(value: &[u8]) -> u64 {
    murmur3_x64_128(value, 0).0
}

/// A mergeable distinct-count sketch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Sketch {
    /// Nothing counted.
    #[default]
    Empty,
    /// At most [`EXPLICIT_MAX`] distinct hashes, ordered as signed 64-bit integers (the
    /// extension's order).
    Explicit(Vec<u64>),
    /// 2^[`LOG2M`] registers.
    Registers(Box<[u8]>),
}

/// A sketch's bytes are not a sketch of these parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a distinct-count sketch: {0}")]
pub struct SketchError(&'static str);

fn signed_order(a: &u64, b: &u64) -> Ordering {
    a.cast_signed().cmp(&b.cast_signed())
}

impl Sketch {
    /// An empty sketch.
    pub fn new() -> Self {
        Self::Empty
    }

    /// The sketch of `values`' hashes.
    pub fn of_hashes(values: impl IntoIterator<Item = u64>) -> Self {
        let mut sketch = Self::new();
        for value in values {
            sketch.add(value);
        }
        sketch
    }

    /// Counts `hash` (see [`hash`]).
    pub fn add(&mut self, hash: u64) {
        match self {
            Self::Empty => *self = Self::Explicit(vec![hash]),
            Self::Explicit(hashes) => match hashes.binary_search_by(|h| signed_order(h, &hash)) {
                Ok(_) => {}
                Err(_) if hashes.len() >= EXPLICIT_MAX => {
                    let mut registers = registers_of(hashes);
                    set_register(&mut registers, hash);
                    *self = Self::Registers(registers);
                }
                Err(at) => hashes.insert(at, hash),
            },
            Self::Registers(registers) => set_register(registers, hash),
        }
    }

    /// Adds everything `other` counts.
    pub fn merge(&mut self, other: &Sketch) {
        match (&mut *self, other) {
            (_, Self::Empty) => {}
            (Self::Empty, _) => *self = other.clone(),
            (Self::Explicit(ours), Self::Explicit(theirs)) => {
                // Both sorted: one pass; past the explicit limit, the registers of the union.
                let mut union = Vec::with_capacity(ours.len() + theirs.len());
                let (mut i, mut j) = (0, 0);
                while i < ours.len() && j < theirs.len() {
                    match signed_order(&ours[i], &theirs[j]) {
                        Ordering::Less => {
                            union.push(ours[i]);
                            i += 1;
                        }
                        Ordering::Greater => {
                            union.push(theirs[j]);
                            j += 1;
                        }
                        Ordering::Equal => {
                            union.push(ours[i]);
                            i += 1;
                            j += 1;
                        }
                    }
                }
                union.extend_from_slice(&ours[i..]);
                union.extend_from_slice(&theirs[j..]);
                *self = if union.len() > EXPLICIT_MAX {
                    Self::Registers(registers_of(&union))
                } else {
                    Self::Explicit(union)
                };
            }
            (Self::Explicit(ours), Self::Registers(theirs)) => {
                let mut registers = theirs.clone();
                for hash in ours.iter() {
                    set_register(&mut registers, *hash);
                }
                *self = Self::Registers(registers);
            }
            (Self::Registers(ours), Self::Explicit(theirs)) => {
                for hash in theirs {
                    set_register(ours, *hash);
                }
            }
            (Self::Registers(ours), Self::Registers(theirs)) => {
                for (mine, their) in ours.iter_mut().zip(theirs.iter()) {
                    *mine = (*mine).max(*their);
                }
            }
        }
    }

    /// The estimated number of distinct values counted: exact while the sketch is explicit.
    pub fn estimate(&self) -> u64 {
        match self {
            Self::Empty => 0,
            Self::Explicit(hashes) => hashes.len() as u64,
            Self::Registers(registers) => improved_estimate(registers).round() as u64,
        }
    }

    /// The sketch in the extension's storage format: its `hll` value's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = |kind: u8| vec![(VERSION << 4) | kind, PARAMETERS, SETTINGS];
        match self {
            Self::Empty => header(TYPE_EMPTY),
            Self::Explicit(hashes) => {
                let mut bytes = header(TYPE_EXPLICIT);
                bytes.reserve(8 * hashes.len());
                for hash in hashes {
                    bytes.extend_from_slice(&hash.to_be_bytes());
                }
                bytes
            }
            Self::Registers(registers) => {
                let filled = registers.iter().filter(|r| **r != 0).count();
                let chunk = u32::from(LOG2M + REGWIDTH);
                // Sparse (index and value of each filled register) when smaller, as the
                // extension writes it.
                if filled * (chunk as usize) < REGISTERS * usize::from(REGWIDTH) {
                    let mut bytes = header(TYPE_SPARSE);
                    let mut bits = BitWriter::new(&mut bytes);
                    for (index, value) in registers.iter().enumerate() {
                        if *value != 0 {
                            let entry = ((index as u32) << REGWIDTH) | u32::from(*value);
                            bits.write(entry, chunk);
                        }
                    }
                    bits.finish();
                    bytes
                } else {
                    let mut bytes = header(TYPE_FULL);
                    let mut bits = BitWriter::new(&mut bytes);
                    for value in registers.iter() {
                        bits.write(u32::from(*value), u32::from(REGWIDTH));
                    }
                    bits.finish();
                    bytes
                }
            }
        }
    }

    /// The sketch stored as `bytes` (see [`Sketch::to_bytes`]).
    ///
    /// # Errors
    /// [`SketchError`] when the bytes are not a schema-1 sketch of these parameters.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SketchError> {
        let [first, parameters, _settings, body @ ..] = bytes else {
            return Err(SketchError("shorter than its header"));
        };
        if first >> 4 != VERSION {
            return Err(SketchError("an unknown schema version"));
        }
        if *parameters != PARAMETERS {
            return Err(SketchError("other register parameters"));
        }
        match first & 0xf {
            TYPE_EMPTY if body.is_empty() => Ok(Self::Empty),
            TYPE_EXPLICIT if body.len() % 8 == 0 && body.len() / 8 <= EXPLICIT_MAX => {
                let hashes: Vec<u64> = body
                    .chunks_exact(8)
                    .map(|chunk| {
                        let mut word = [0; 8];
                        word.copy_from_slice(chunk);
                        u64::from_be_bytes(word)
                    })
                    .collect();
                if hashes.is_empty() {
                    return Ok(Self::Empty);
                }
                if !hashes.is_sorted_by(|a, b| signed_order(a, b) == Ordering::Less) {
                    return Err(SketchError("explicit hashes out of order"));
                }
                Ok(Self::Explicit(hashes))
            }
            TYPE_SPARSE => {
                let chunk = u32::from(LOG2M + REGWIDTH);
                let filled = body.len() * 8 / chunk as usize;
                if body.len() * 8 - filled * chunk as usize >= 8 {
                    return Err(SketchError("inconsistent padding"));
                }
                let mut registers = vec![0u8; REGISTERS].into_boxed_slice();
                let mut bits = BitReader::new(body);
                for _ in 0..filled {
                    let entry = bits.read(chunk);
                    let index = (entry >> REGWIDTH) as usize;
                    registers[index] = (entry & u32::from(REGISTER_MAX)) as u8;
                }
                Ok(Self::Registers(registers))
            }
            TYPE_FULL if body.len() == (REGISTERS * usize::from(REGWIDTH)).div_ceil(8) => {
                let mut bits = BitReader::new(body);
                let registers = (0..REGISTERS)
                    .map(|_| bits.read(u32::from(REGWIDTH)) as u8)
                    .collect();
                Ok(Self::Registers(registers))
            }
            _ => Err(SketchError(
                "an unknown or inconsistently sized representation",
            )),
        }
    }
}

/// The registers counting `hashes`.
fn registers_of(hashes: &[u64]) -> Box<[u8]> {
    let mut registers = vec![0u8; REGISTERS].into_boxed_slice();
    for hash in hashes {
        set_register(&mut registers, *hash);
    }
    registers
}

/// Raises the register `hash` selects (its low [`LOG2M`] bits) to the rank of the rest (one
/// more than its trailing zeros; 0 when the rest is 0), capped at the register's width.
fn set_register(registers: &mut [u8], hash: u64) {
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    let rest = hash >> LOG2M;
    let rank = if rest == 0 {
        0
    } else {
        (rest.trailing_zeros() + 1).min(u32::from(REGISTER_MAX)) as u8
    };
    if registers[index] < rank {
        registers[index] = rank;
    }
}

/// Ertl's improved raw estimator over registers whose largest value, [`REGISTER_MAX`], stands
/// for every rank from there up (q + 1 with q = `REGISTER_MAX` - 1).
fn improved_estimate(registers: &[u8]) -> f64 {
    let q = usize::from(REGISTER_MAX) - 1;
    let m = registers.len() as f64;
    let mut counts = vec![0u32; q + 2];
    for value in registers {
        counts[usize::from(*value)] += 1;
    }
    let mut z = m * tau(1.0 - f64::from(counts[q + 1]) / m);
    for k in (1..=q).rev() {
        z = 0.5 * (z + f64::from(counts[k]));
    }
    z += m * sigma(f64::from(counts[0]) / m);
    let alpha = 1.0 / (2.0 * std::f64::consts::LN_2);
    alpha * m * m / z
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if z == previous {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == previous {
            return z / 3.0;
        }
    }
}

/// Writes values of a few bits each, most significant bit first, into bytes.
struct BitWriter<'a> {
    bytes: &'a mut Vec<u8>,
    /// Bits waiting to be written, in the low `pending_bits` bits.
    pending: u64,
    pending_bits: u32,
}

impl<'a> BitWriter<'a> {
    fn new(bytes: &'a mut Vec<u8>) -> Self {
        Self {
            bytes,
            pending: 0,
            pending_bits: 0,
        }
    }

    fn write(&mut self, value: u32, bits: u32) {
        self.pending = (self.pending << bits) | u64::from(value & ((1 << bits) - 1));
        self.pending_bits += bits;
        while self.pending_bits >= 8 {
            self.pending_bits -= 8;
            self.bytes.push((self.pending >> self.pending_bits) as u8);
        }
    }

    /// Writes what is left, padded with zero bits to a whole byte.
    fn finish(mut self) {
        if self.pending_bits > 0 {
            self.bytes
                .push((self.pending << (8 - self.pending_bits)) as u8);
            self.pending_bits = 0;
        }
    }
}

/// Reads values of a few bits each (at most 24), most significant bit first; past the end,
/// zero bits.
struct BitReader<'a> {
    bytes: &'a [u8],
    /// The next byte to take in.
    next: usize,
    /// Bits taken in and not read yet, in the low `pending_bits` bits.
    pending: u32,
    pending_bits: u32,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            next: 0,
            pending: 0,
            pending_bits: 0,
        }
    }

    fn read(&mut self, bits: u32) -> u32 {
        while self.pending_bits < bits {
            let byte = self.bytes.get(self.next).copied().unwrap_or(0);
            self.next += 1;
            self.pending = (self.pending << 8) | u32::from(byte);
            self.pending_bits += 8;
        }
        self.pending_bits -= bits;
        let value = (self.pending >> self.pending_bits) & ((1 << bits) - 1);
        self.pending &= (1 << self.pending_bits) - 1;
        value
    }
}

/// MurmurHash3 x64 128 of `data` with `seed`, as its two 64-bit halves.
fn murmur3_x64_128(data: &[u8], seed: u32) -> (u64, u64) {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    let mut h1 = u64::from(seed);
    let mut h2 = u64::from(seed);
    let mut blocks = data.chunks_exact(16);
    for block in &mut blocks {
        let (a, b) = block.split_at(8);
        let mut k1 = u64::from_le_bytes(a.try_into().unwrap_or_default());
        let mut k2 = u64::from_le_bytes(b.try_into().unwrap_or_default());
        k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 ^= k1;
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 ^= k2;
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    let mut k1 = 0u64;
    let mut k2 = 0u64;
    for (i, byte) in tail.iter().enumerate() {
        if i < 8 {
            k1 ^= u64::from(*byte) << (8 * i);
        } else {
            k2 ^= u64::from(*byte) << (8 * (i - 8));
        }
    }
    if tail.len() > 8 {
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    }
    if !tail.is_empty() {
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    }
    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of pseudo-random numbers (SplitMix64).
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    }

    fn users(range: std::ops::Range<u32>) -> Sketch {
        Sketch::of_hashes(range.map(|i| hash(format!("user-{i}").as_bytes())))
    }

    /// SHA-256 in hex: long vectors compared with short expectations.
    fn sha256_hex(bytes: &[u8]) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Values the extension gave: `hll_hash_text(…)`.
    #[test]
    fn the_hash_is_the_extensions() {
        assert_eq!(hash(b""), 0);
        assert_eq!(hash(b"hello").cast_signed(), -3_758_069_500_696_749_310);
        assert_eq!(hash(b"user-1").cast_signed(), 7_038_226_039_998_199_158);
        assert_eq!(
            hash(b"a much longer user identifier of 41 bytes").cast_signed(),
            174_100_603_915_534_082
        );
    }

    /// `hll_add_agg(hll_hash_text('user-' || i), 15, 5)` over i in 1..=n, as the extension
    /// stored it: SHA-256 of the bytes, their length, and `hll_cardinality` where it is exact.
    #[test]
    fn the_bytes_are_the_extensions() {
        let cases: [(u32, &str, usize); 7] = [
            (
                1,
                "2f874cbf2025b5b1795a04f4afde4544d67066657859dcfffb6410fcb3955e45",
                11,
            ),
            (
                3,
                "3b87f704677fcb76dfdb10e570c35b159b6ebd653a4a8326da7f184150289c09",
                27,
            ),
            (
                2560,
                "e571781204226fef35acf262cf57b4cefe4d4b280dc1ecfe252cf898e4c0df75",
                20_483,
            ),
            (
                2561,
                "fd29e4fe9ca841318643ee3d43de8632789374dc4fe3e3fb9debfc045506691a",
                6_166,
            ),
            (
                3000,
                "4c42a1ad7469cee34455b8afffbf4f97c52a79814425eb619d1da9c7d129feb9",
                7_163,
            ),
            (
                40_000,
                "2af4d81aa8043af3c4a9da0db1c92a2ebd9f5e81e8f79716659851ffd8538c4d",
                20_483,
            ),
            (
                200_000,
                "7ee5b91849a6b70178ec2f71510755308e303754ee26cde7e7d2aafd8cb6cd1f",
                20_483,
            ),
        ];
        for (n, digest, len) in cases {
            let sketch = users(1..n + 1);
            let bytes = sketch.to_bytes();
            assert_eq!(
                (bytes.len(), sha256_hex(&bytes).as_str()),
                (len, digest),
                "{n} users"
            );
            assert_eq!(
                Sketch::from_bytes(&bytes),
                Ok(sketch),
                "{n} users read back"
            );
        }
        assert_eq!(Sketch::Empty.to_bytes(), [0x11, 0x8f, 0x7f]);
        assert_eq!(EXPLICIT_MAX, 2560);
    }

    /// `hll_union` of the extension over overlapping sketches is the sketch of the union, as
    /// merging here is: its bytes are those of `the_bytes_are_the_extensions` for 1..=3000 and
    /// 1..=40000.
    #[test]
    fn merges_are_the_extensions_unions() {
        let cases = [
            (
                1..2_001,
                1_500..3_001,
                "4c42a1ad7469cee34455b8afffbf4f97c52a79814425eb619d1da9c7d129feb9",
            ),
            (
                1..101,
                50..40_001,
                "2af4d81aa8043af3c4a9da0db1c92a2ebd9f5e81e8f79716659851ffd8538c4d",
            ),
        ];
        for (a, b, digest) in cases {
            let mut merged = users(a);
            merged.merge(&users(b));
            assert_eq!(sha256_hex(&merged.to_bytes()), digest);
        }
    }

    #[test]
    fn counts_are_exact_while_explicit() {
        for n in [0, 1, 2, 99, 100, 1_000, EXPLICIT_MAX as u32] {
            let sketch = users(0..n);
            assert_eq!(sketch.estimate(), u64::from(n), "{n} users");
            let again = users(0..n);
            let mut doubled = sketch.clone();
            doubled.merge(&again);
            assert_eq!(doubled.estimate(), u64::from(n), "{n} users counted twice");
        }
    }

    #[test]
    fn merging_is_associative_commutative_and_the_sketch_of_the_union() {
        let mut random = Random(7);
        for round in 0..40 {
            let sizes = [
                random.next() % 4_000,
                random.next() % 4_000,
                random.next() % 40,
            ];
            let sets: Vec<Vec<u64>> = sizes
                .iter()
                .map(|size| (0..*size).map(|_| random.next() % 6_000).collect())
                .collect();
            let sketches: Vec<Sketch> = sets
                .iter()
                .map(|set| Sketch::of_hashes(set.iter().map(|v| hash(&v.to_le_bytes()))))
                .collect();
            let union = Sketch::of_hashes(sets.iter().flatten().map(|v| hash(&v.to_le_bytes())));
            let merged = |order: [usize; 3]| {
                let mut sketch = sketches[order[0]].clone();
                let mut rest = sketches[order[1]].clone();
                rest.merge(&sketches[order[2]]);
                sketch.merge(&rest);
                sketch
            };
            for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2], [2, 0, 1]] {
                assert_eq!(merged(order), union, "round {round}, order {order:?}");
            }
        }
    }

    #[test]
    fn disjoint_sets_merge_to_about_their_sum_within_the_bound() {
        let mut random = Random(11);
        let mut worst: f64 = 0.0;
        for round in 0..30u32 {
            let a = 1_000 + random.next() % 150_000;
            let b = 1_000 + random.next() % 150_000;
            let offset = u64::from(round) << 40;
            let left = Sketch::of_hashes((0..a).map(|v| hash(&(offset + v).to_le_bytes())));
            let right = Sketch::of_hashes((a..a + b).map(|v| hash(&(offset + v).to_le_bytes())));
            let mut both = left.clone();
            both.merge(&right);
            for (sketch, truth) in [(&left, a), (&right, b), (&both, a + b)] {
                let error = (sketch.estimate() as f64 - truth as f64).abs() / truth as f64;
                worst = worst.max(error);
            }
        }
        eprintln!("worst relative error over 90 estimates: {worst:.4}");
        assert!(worst <= 0.02, "the worst relative error was {worst:.4}");
    }

    /// From the first count past the explicit threshold up to 400,000, through the range where
    /// the classic estimator switches from linear counting (about 80,000 here).
    #[test]
    fn estimates_hold_across_the_range() {
        let mut sketch = Sketch::new();
        let mut counted = 0u32;
        let mut worst: f64 = 0.0;
        for n in (2_561..400_000).step_by(3_989) {
            while counted < n {
                sketch.add(hash(&counted.to_le_bytes()));
                counted += 1;
            }
            let error = (sketch.estimate() as f64 - f64::from(n)).abs() / f64::from(n);
            worst = worst.max(error);
        }
        assert!(worst <= 0.02, "the worst relative error was {worst:.4}");
    }

    #[test]
    fn bytes_that_are_not_a_sketch_are_refused() {
        for bytes in [
            &[][..],
            &[0x11, 0x8f][..],
            &[0x21, 0x8f, 0x7f][..],
            &[0x11, 0x8e, 0x7f][..],
            &[0x12, 0x8f, 0x7f, 1, 2, 3][..],
            &[0x14, 0x8f, 0x7f, 0][..],
            &[0x15, 0x8f, 0x7f][..],
        ] {
            assert!(Sketch::from_bytes(bytes).is_err(), "{bytes:?}");
        }
        let out_of_order = [
            0x12, 0x8f, 0x7f, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1,
        ];
        assert!(Sketch::from_bytes(&out_of_order).is_err());
    }
}
