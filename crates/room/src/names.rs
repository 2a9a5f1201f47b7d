//! Name rules: which nicks and room names are valid, and how they compare.
//!
//! Parla advertises `CASEMAPPING=ascii`: names compare with ASCII letters folded to lower case
//! and every other byte as is. Each name is kept twice, as the display form the user chose and
//! as the folded key used for lookups (ergo's `name` / `nameCasefolded`), so `Alice` and `alice`
//! can never both be taken.

/// Folds a name to its lookup key under `CASEMAPPING=ascii`.
pub fn casefold(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Whether two names are one under `CASEMAPPING=ascii` (their [`casefold`]s are equal), without
/// folding either.
pub fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The characters besides letters that a nick may start with (RFC 2812 "special").
const SPECIAL: &[u8] = b"[]\\`_^{|}";

/// Why a nick is not acceptable, phrased for the person who chose it.
pub fn nick_problem(nick: &str, max_len: usize) -> Option<String> {
    let bytes = nick.as_bytes();
    let first = *bytes.first()?;
    if bytes.len() > max_len {
        return Some(format!(
            "is {} characters long; names can be at most {max_len}",
            bytes.len()
        ));
    }
    if !(first.is_ascii_alphabetic() || SPECIAL.contains(&first)) {
        return Some("must start with a letter or one of [ ] \\ ` _ ^ { | }".to_owned());
    }
    if let Some(bad) = bytes
        .iter()
        .find(|&&b| !(b.is_ascii_alphanumeric() || SPECIAL.contains(&b) || b == b'-'))
    {
        let shown = if *bad == b' ' {
            "a space".to_owned()
        } else if bad.is_ascii_graphic() {
            format!("'{}'", *bad as char)
        } else {
            format!("byte 0x{bad:02x}")
        };
        return Some(format!(
            "contains {shown}; use letters, digits and [ ] \\ ` _ ^ {{ | }} -"
        ));
    }
    None
}

/// Whether `nick` is a valid nick of at most `max_len` bytes.
pub fn is_valid_nick(nick: &str, max_len: usize) -> bool {
    !nick.is_empty() && nick_problem(nick, max_len).is_none()
}

/// Whether `name` is a valid room name: `#`, then 1 or more bytes, at most `max_len` in all,
/// with no space, comma, BEL or other control character.
pub fn is_valid_channel(name: &str, max_len: usize) -> bool {
    let bytes = name.as_bytes();
    bytes.len() >= 2
        && bytes.len() <= max_len
        && bytes[0] == b'#'
        && bytes[1..]
            .iter()
            .all(|&b| b != b' ' && b != b',' && b >= 0x20 && b != 0x7f)
}

/// Whether `target` names a room rather than a user (`CHANTYPES=#`).
pub fn is_channel_name(target: &str) -> bool {
    target.starts_with('#')
}

/// Matches `text` against an IRC glob `mask` (`*` any run, `?` any one character), casefolded.
pub fn mask_matches(mask: &str, text: &str) -> bool {
    let mask = casefold(mask);
    let text = casefold(text);
    let (m, t): (Vec<char>, Vec<char>) = (mask.chars().collect(), text.chars().collect());
    // Iterative glob with single-star backtracking: linear in practice, never exponential.
    let (mut mi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if mi < m.len() && (m[mi] == '?' || m[mi] == t[ti]) {
            mi += 1;
            ti += 1;
        } else if mi < m.len() && m[mi] == '*' {
            star = Some((mi, ti));
            mi += 1;
        } else if let Some((smi, sti)) = star {
            mi = smi + 1;
            ti = sti + 1;
            star = Some((smi, sti + 1));
        } else {
            return false;
        }
    }
    m[mi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("alice", true)]
    #[case("Alice_", true)]
    #[case("[bot]", true)]
    #[case("a-1", true)]
    #[case("`q", true)]
    #[case("", false)]
    #[case("1abc", false)]
    #[case("-abc", false)]
    #[case("a b", false)]
    #[case("a,b", false)]
    #[case("a!b", false)]
    #[case("a@b", false)]
    #[case("#chan", false)]
    #[case(":x", false)]
    #[case("jörg", false)]
    #[case("abcdefghijabcdefghijabcdefghij", true)]
    #[case("abcdefghijabcdefghijabcdefghijk", false)]
    fn nick_validity(#[case] nick: &str, #[case] valid: bool) {
        assert_eq!(is_valid_nick(nick, 30), valid, "{nick:?}");
    }

    #[test]
    fn nick_problems_say_what_to_do() {
        assert_eq!(
            nick_problem("9lives", 30).unwrap(),
            "must start with a letter or one of [ ] \\ ` _ ^ { | }"
        );
        assert!(
            nick_problem("a b", 30)
                .unwrap()
                .contains("contains a space")
        );
        assert!(
            nick_problem(&"a".repeat(31), 30)
                .unwrap()
                .contains("at most 30")
        );
    }

    #[rstest]
    #[case("#lobby", true)]
    #[case("#", false)]
    #[case("lobby", false)]
    #[case("#a b", false)]
    #[case("#a,b", false)]
    #[case("#a\x07", false)]
    #[case("#café", true)]
    fn channel_validity(#[case] name: &str, #[case] valid: bool) {
        assert_eq!(is_valid_channel(name, 50), valid, "{name:?}");
    }

    #[rstest]
    #[case("*", "anything", true)]
    #[case("a*", "Alice", true)]
    #[case("*ce", "alice", true)]
    #[case("a?ice", "alice", true)]
    #[case("a?ice", "alce", false)]
    #[case("*a*b*", "xxaxxbxx", true)]
    #[case("*a*b", "xxaxxbxx", false)]
    #[case("", "", true)]
    #[case("", "a", false)]
    fn masks(#[case] mask: &str, #[case] text: &str, #[case] matches: bool) {
        assert_eq!(mask_matches(mask, text), matches);
    }

    #[test]
    fn casefold_is_ascii_only() {
        assert_eq!(casefold("AlIcE[]"), "alice[]");
        assert_eq!(casefold("ÄB"), "Äb");
    }
}
