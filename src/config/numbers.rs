//! The checked number types of the run config: each deserialises only from values it can be
//! (serde then names the key: `[train] epochs: NaN is not a finite number above 0`).
use serde::{Deserialize, Serialize};

/// Defines a number type that deserialises only from values `$ok` accepts.
macro_rules! checked {
    ($(#[$doc:meta])* $name:ident($t:ty = $ts:literal), $ok:expr, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
        #[serde(try_from = $ts, into = $ts)]
        pub struct $name(pub(super) $t);
        impl $name {
            pub fn get(self) -> $t {
                self.0
            }
        }
        impl TryFrom<$t> for $name {
            type Error = String;
            fn try_from(v: $t) -> std::result::Result<Self, String> {
                let ok: fn($t) -> bool = $ok;
                if ok(v) {
                    Ok($name(v))
                } else {
                    Err(format!("{v} is not {}", $what))
                }
            }
        }
        impl From<$name> for $t {
            fn from(v: $name) -> $t {
                v.0
            }
        }
    };
}

checked!(
    /// An integer of at least 1.
    Count(i64 = "i64"), |v| v >= 1, "a count (at least 1)"
);
checked!(
    /// An integer of at least 0.
    Steps(i64 = "i64"), |v| v >= 0, "a number of steps (at least 0)"
);
checked!(
    /// A finite number above 0.
    Positive(f64 = "f64"), |v| v.is_finite() && v > 0.0, "a finite number above 0"
);
checked!(
    /// A finite number of at least 0.
    NonNegative(f64 = "f64"), |v| v.is_finite() && v >= 0.0, "a finite number of at least 0"
);
checked!(
    /// A number in [0, 1).
    Fraction(f64 = "f64"), |v| (0.0..1.0).contains(&v), "a number in [0, 1)"
);
checked!(
    /// A sample length in tokens (at least 8: a prompt and a token of answer).
    MaxLength(i64 = "i64"), |v| v >= 8, "a length of at least 8 tokens"
);

impl MaxLength {
    pub fn tokens(self) -> usize {
        self.0 as usize
    }
}
