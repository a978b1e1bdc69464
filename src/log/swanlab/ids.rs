//! Run ids, experiment names and colours as `swanlab/utils/experiment/__init__.py` generates them
//! (`generate_id`, `generate_name("beauty")`, `generate_color("beauty")`).

const ADJECTIVES: [&str; 15] = [
    "elegant",
    "stellar",
    "vibrant",
    "serene",
    "cosmic",
    "lucid",
    "radiant",
    "ethereal",
    "nimble",
    "valiant",
    "gentle",
    "brilliant",
    "luminous",
    "tranquil",
    "dazzling",
];
const ANIMALS: [&str; 20] = [
    "swan", "rat", "ox", "tiger", "rabbit", "dragon", "snake", "horse", "goat", "monkey",
    "rooster", "dog", "pig", "cat", "elephant", "penguin", "kangaroo", "panda", "lion", "zebra",
];

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        // No OS entropy: fall back to the clock, ids only need to avoid collisions in one log dir.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32);
    }
    u64::from_le_bytes(b)
}

/// Uniform in `0..n`.
fn below(n: u64) -> u64 {
    random_u64() % n
}

/// 8 characters of `[a-z0-9]`.
pub fn run_id() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| CHARS[below(CHARS.len() as u64) as usize] as char)
        .collect()
}

/// `adjective-animal-NN`, e.g. `radiant-dog-28`.
pub fn experiment_name() -> String {
    let adj = ADJECTIVES[below(ADJECTIVES.len() as u64) as usize];
    let animal = ANIMALS[below(ANIMALS.len() as u64) as usize];
    format!("{adj}-{animal}-{}", 10 + below(90))
}

/// A soft colour: random hue, saturation 0.4-0.6, value 0.85-1.0, as `#rrggbb`.
pub fn color() -> String {
    let unit = || (random_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let (h, s, v) = (unit(), 0.4 + 0.2 * unit(), 0.85 + 0.15 * unit());
    // colorsys.hsv_to_rgb
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    let (r, g, b) = match i as i64 % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    let byte = |x: f64| (x * 255.0) as u8;
    format!("#{:02x}{:02x}{:02x}", byte(r), byte(g), byte(b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn shapes() {
        let id = super::run_id();
        assert!(
            id.len() == 8
                && id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_eq!(super::experiment_name().split('-').count(), 3);
        let c = super::color();
        assert!(c.len() == 7 && c.starts_with('#'), "{c}");
    }
}
