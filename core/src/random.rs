//! SplitMix64: deterministic pseudo-random numbers for the property tests and the allocator
//! benchmark, which must draw the same sequence as its Go peer (the same constants) so both
//! sides release the same addresses. Not for anything that needs unpredictability.

/// A SplitMix64 generator from a seed.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A random index below `len` (reduced modulo, as the Go side does).
    pub fn below(&mut self, len: usize) -> usize {
        (self.next() % len as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_is_splitmix64s() {
        // First outputs for seed 0, as published with the algorithm.
        let mut rng = SplitMix64(0);
        assert_eq!(rng.next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next(), 0x6E78_9E6A_A1B9_65F4);
        assert!(SplitMix64(7).below(10) < 10);
    }
}
