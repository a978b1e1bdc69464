//! CPython's `random` module, the part the data split needs: the MT19937 generator seeded the way
//! `random.seed(int)` seeds it (`init_by_array` over the 32-bit words of `abs(seed)`), `getrandbits`,
//! `_randbelow_with_getrandbits` and `shuffle` (Python 3.11 `Lib/random.py`,
//! `Modules/_randommodule.c`). Reproducing them bit for bit is what makes `qwen3-sft split` give
//! exactly the reference's `random.seed(42); random.shuffle(data)` order.

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// A Mersenne Twister in the state CPython's `random.Random` would be in.
#[derive(Clone)]
pub struct PyRandom {
    mt: [u32; N],
    index: usize,
}

impl PyRandom {
    /// `random.seed(seed)` for an int seed. Python takes `abs(seed)`, so a negative seed equals its
    /// absolute value; callers pass the absolute value.
    pub fn new(seed: u64) -> Self {
        // _randommodule.c random_seed(): the key is abs(n) as little-endian 32-bit words, at least
        // one word (so 0 becomes the key [0]).
        let lo = seed as u32;
        let hi = (seed >> 32) as u32;
        let key: Vec<u32> = if hi == 0 { vec![lo] } else { vec![lo, hi] };
        let mut r = PyRandom {
            mt: [0; N],
            index: N,
        };
        r.init_by_array(&key);
        r
    }

    fn init_genrand(&mut self, s: u32) {
        self.mt[0] = s;
        for i in 1..N {
            let prev = self.mt[i - 1];
            self.mt[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        self.index = N;
    }

    fn init_by_array(&mut self, key: &[u32]) {
        self.init_genrand(19_650_218);
        let (mut i, mut j) = (1usize, 0usize);
        let mut k = N.max(key.len());
        while k > 0 {
            let prev = self.mt[i - 1];
            self.mt[i] = (self.mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                self.mt[0] = self.mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
            k -= 1;
        }
        k = N - 1;
        while k > 0 {
            let prev = self.mt[i - 1];
            self.mt[i] = (self.mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                self.mt[0] = self.mt[N - 1];
                i = 1;
            }
            k -= 1;
        }
        // Guarantees a non-zero initial state, as in the reference C code.
        self.mt[0] = 0x8000_0000;
    }

    /// `genrand_uint32()`: the next raw 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        let mag01 = |y: u32| if y & 1 == 0 { 0 } else { MATRIX_A };
        for kk in 0..N {
            let y = (self.mt[kk] & UPPER_MASK) | (self.mt[(kk + 1) % N] & LOWER_MASK);
            self.mt[kk] = self.mt[(kk + M) % N] ^ (y >> 1) ^ mag01(y);
        }
        self.index = 0;
    }

    /// `getrandbits(k)` for `0 < k <= 64`: 32-bit words, least significant first, the last one
    /// keeping only its top bits (as `_random_Random_getrandbits_impl` does).
    pub fn getrandbits(&mut self, k: u32) -> u64 {
        assert!(
            (1..=64).contains(&k),
            "getrandbits supports 1..=64 bits, got {k}"
        );
        if k <= 32 {
            return u64::from(self.next_u32() >> (32 - k));
        }
        let low = u64::from(self.next_u32());
        let high = u64::from(self.next_u32() >> (64 - k));
        low | (high << 32)
    }

    /// `_randbelow_with_getrandbits(n)`: uniform in `[0, n)` by rejection, `n > 0`.
    pub fn randbelow(&mut self, n: u64) -> u64 {
        assert!(n > 0, "randbelow needs n > 0");
        let k = 64 - n.leading_zeros(); // n.bit_length(), not (n-1): n may be 1
        let mut r = self.getrandbits(k);
        while r >= n {
            r = self.getrandbits(k);
        }
        r
    }

    /// `random.shuffle(x)` (Fisher-Yates from the end, as Python 3.11 does).
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let j = self.randbelow(i as u64 + 1) as usize;
            x.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_python_values() {
        // python3 -c "import random; random.seed(42); print([random.getrandbits(32) for _ in range(3)])"
        // then random.seed(0); random.getrandbits(40), random.getrandbits(64)
        let mut r = PyRandom::new(42);
        let got: Vec<u64> = (0..3).map(|_| r.getrandbits(32)).collect();
        assert_eq!(got, vec![2746317213, 478163327, 107420369]);
        let mut r = PyRandom::new(0);
        assert_eq!(
            (r.getrandbits(40), r.getrandbits(64)),
            (424533559245, 16422101724900707500)
        );
    }
}
