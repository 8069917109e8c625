//! Gaussian noise for differentially private publishing, from a keyed SHA-256 counter stream.
//!
//! The noise must be unpredictable (it protects individual contributions), and each aggregator
//! shard draws its own independent stream from one secret round seed. SHA-256 over
//! `seed || stream || counter` is a sound generator for that without adding a dependency.

use sha2::{Digest, Sha256};

pub struct Gaussian {
    seed: [u8; 32],
    stream: u64,
    counter: u64,
    words: [u64; 4],
    next_word: usize,
    spare: Option<f64>,
}

impl Gaussian {
    pub fn new(seed: [u8; 32], stream: u64) -> Self {
        Self {
            seed,
            stream,
            counter: 0,
            words: [0; 4],
            next_word: 4,
            spare: None,
        }
    }

    fn next_u64(&mut self) -> u64 {
        if self.next_word == 4 {
            let mut h = Sha256::new();
            h.update(self.seed);
            h.update(self.stream.to_le_bytes());
            h.update(self.counter.to_le_bytes());
            let d = h.finalize();
            for (i, w) in self.words.iter_mut().enumerate() {
                let mut b = [0u8; 8];
                b.copy_from_slice(&d[i * 8..i * 8 + 8]);
                *w = u64::from_le_bytes(b);
            }
            self.counter += 1;
            self.next_word = 0;
        }
        let w = self.words[self.next_word];
        self.next_word += 1;
        w
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// A standard normal sample (Box–Muller, using both outputs).
    pub fn next_normal(&mut self) -> f64 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let (u1, u2) = (self.uniform(), self.uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        self.spare = Some(r * t.sin());
        r * t.cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_are_standard_normal_and_streams_differ() {
        let mut g = Gaussian::new([7; 32], 0);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| g.next_normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var - 1.0).abs() < 0.02, "{var}");
        let mut other = Gaussian::new([7; 32], 1);
        assert_ne!(other.next_normal(), xs[0]);
    }
}
