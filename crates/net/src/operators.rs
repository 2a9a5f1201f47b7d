//! The server operators file (`parla-server --operators FILE`) and its passwords: argon2id
//! hashes in the PHC string form, made by `parla-server hash-password`.
//!
//! ```text
//! # name  password hash
//! alice   $argon2id$v=19$m=19456,t=2,p=1$…
//! ```
//!
//! One operator per line: a name, white space, the hash; blank lines and lines starting with
//! `#` are ignored.

use std::path::Path;

use anyhow::{Context, bail};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use parla_room::server::Operator;

/// The operators in the file at `path`; every error names the line and what to do.
pub fn load(path: &Path) -> anyhow::Result<Vec<Operator>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "could not read the operators file {}; check the path given to --operators",
            path.display()
        )
    })?;
    parse(&text).with_context(|| format!("in the operators file {}", path.display()))
}

/// The operators in `text` (the file's contents).
pub fn parse(text: &str) -> anyhow::Result<Vec<Operator>> {
    let mut operators: Vec<Operator> = Vec::new();
    for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(name), Some(hash), None) = (fields.next(), fields.next(), fields.next()) else {
            bail!(
                "line {n}: expected `<name> <password hash>`; make the hash with `parla-server hash-password`"
            );
        };
        if PasswordHash::new(hash).is_err() {
            bail!(
                "line {n}: the password hash of {name} is not an argon2 hash; make one with `parla-server hash-password`"
            );
        }
        if operators.iter().any(|o| o.name == name) {
            bail!("line {n}: operator {name} is listed twice; keep one line per operator");
        }
        operators.push(Operator {
            name: name.to_owned(),
            password_hash: hash.to_owned(),
        });
    }
    Ok(operators)
}

/// The argon2id hash of `password` with a fresh random salt (argon2's default parameters:
/// 19 MiB, 2 passes, the OWASP recommendation).
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with its default parameters hashes any password")
        .to_string()
}

/// Whether `password` matches `hash` (the core's `Config::verify_password`).
pub fn verify(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("operpassword");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&h, "operpassword"));
        assert!(!verify(&h, "operpassword "));
        assert!(!verify("not a hash", "operpassword"));
    }

    #[test]
    fn the_file_lists_operators_and_its_errors_name_the_line() {
        let h = hash("x");
        let ops = parse(&format!("# operators\n\nalice {h}\n  bob\t{h}  \n")).unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(
            (ops[0].name.as_str(), ops[1].name.as_str()),
            ("alice", "bob")
        );
        let err = parse("alice\n").unwrap_err().to_string();
        assert!(
            err.contains("line 1") && err.contains("hash-password"),
            "{err}"
        );
        let err = parse("alice plaintext\n").unwrap_err().to_string();
        assert!(err.contains("not an argon2 hash"), "{err}");
        let err = parse(&format!("alice {h}\nalice {h}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("twice"), "{err}");
    }
}
