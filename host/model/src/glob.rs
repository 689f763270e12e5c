//! The one `*` glob of Colony: capability symbol and tool-name patterns and risk instrument
//! lists both match with it. `*` stands for any run of characters (including none); every
//! other character matches itself.

/// A compiled `*` glob: the literal pieces between the stars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    prefix: Box<str>,
    middle: Box<[Box<str>]>,
    suffix: Box<str>,
    /// `false`: the pattern has no `*` and `prefix` is the whole of it.
    star: bool,
}

impl Glob {
    /// Compiles a pattern once; matching does not allocate.
    pub fn compile(p: &str) -> Self {
        let parts: Vec<&str> = p.split('*').collect();
        match parts.as_slice() {
            [only] => Glob {
                prefix: (*only).into(),
                middle: Box::new([]),
                suffix: "".into(),
                star: false,
            },
            [first, middle @ .., last] => Glob {
                prefix: (*first).into(),
                middle: middle.iter().map(|m| (*m).into()).collect(),
                suffix: (*last).into(),
                star: true,
            },
            [] => Glob {
                prefix: "".into(),
                middle: Box::new([]),
                suffix: "".into(),
                star: false,
            },
        }
    }

    /// Whether `s` matches the whole pattern.
    pub fn matches(&self, s: &str) -> bool {
        if !self.star {
            return *self.prefix == *s;
        }
        if s.len() < self.prefix.len() + self.suffix.len()
            || !s.starts_with(&*self.prefix)
            || !s.ends_with(&*self.suffix)
        {
            return false;
        }
        // Leftmost matching of each middle piece is optimal for a glob whose only wildcard is `*`.
        let mut rest = &s[self.prefix.len()..s.len() - self.suffix.len()];
        for m in self.middle.iter() {
            match rest.find(&**m) {
                Some(i) => rest = &rest[i + m.len()..],
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn glob_matches() {
        // (pattern, input, matches)
        let cases = [
            ("BTC-USDT", "BTC-USDT", true),
            ("BTC-USDT", "BTC-USDTX", false),
            ("BTC-USDT", "", false),
            ("", "", true),
            ("", "A", false),
            ("*", "", true),
            ("*", "ANY", true),
            ("BTC-*", "BTC-USDT", true),
            ("BTC-*", "BTC-", true),
            ("BTC-*", "ETH-USDT", false),
            ("*-USDT", "ETH-USDT", true),
            ("*-USDT", "ETH-USD", false),
            ("A*B*C", "ABC", true),
            ("A*B*C", "AXXBYYC", true),
            ("A*B*C", "ACB", false),
            // Prefix and suffix must not overlap.
            ("AB*BC", "ABC", false),
            ("AB*BC", "ABBC", true),
            ("*B*B*", "AB", false),
            ("*B*B*", "ABXB", true),
        ];
        for (pattern, input, want) in cases {
            assert_eq!(
                Glob::compile(pattern).matches(input),
                want,
                "{pattern:?} against {input:?}"
            );
        }
    }
}
