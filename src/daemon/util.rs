//! Small helpers of the control plane: ids, names, times.

use std::time::{Duration, SystemTime};

/// 64 random hex digits, like Docker's ids.
pub fn random_id() -> String {
    let mut bytes = [0u8; 32];
    if getrandom::getrandom(&mut bytes).is_err() {
        // getrandom only fails without any entropy source; fall back to the
        // clock and pid, which is still unique enough for local ids.
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        for (i, b) in t
            .to_le_bytes()
            .iter()
            .chain(std::process::id().to_le_bytes().iter())
            .enumerate()
        {
            bytes[i % 32] ^= b;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `id` looks like a full id (64 lowercase hex digits).
pub fn is_full_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Docker's rule for network and container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`,
/// at most 128 characters here.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && name.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// A hostname label as RFC 1123 allows (and `sethostname` takes), at most 63 characters.
pub fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

const ADJECTIVES: &[&str] = &[
    "agile", "bold", "brave", "calm", "clever", "cosy", "deep", "eager", "fast", "gentle", "happy",
    "keen", "lively", "merry", "nimble", "quiet", "quick", "sharp", "steady", "swift", "tidy",
    "vivid", "warm", "wise",
];
const NOUNS: &[&str] = &[
    "badger", "beaver", "burrow", "coney", "ferret", "gopher", "hare", "hedgehog", "marmot",
    "mole", "otter", "rabbit", "shrew", "stoat", "vole", "weasel", "wombat", "meerkat", "lemming",
    "dormouse",
];

/// A Docker-style `adjective_noun` name; the caller retries on a clash.
pub fn random_name() -> String {
    let mut b = [0u8; 2];
    let _ = getrandom::getrandom(&mut b);
    format!(
        "{}_{}",
        ADJECTIVES[b[0] as usize % ADJECTIVES.len()],
        NOUNS[b[1] as usize % NOUNS.len()]
    )
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Docker's `ps` wording for an age: "Less than a second", "5 seconds",
/// "About a minute", "3 minutes", "About an hour", "2 hours", "3 days".
pub fn human_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".into(),
        1..=59 => format!("{s} second{}", if s == 1 { "" } else { "s" }),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids() {
        assert!(valid_name("dev") && valid_name("a_b.c-d") && valid_name("0x"));
        assert!(!valid_name("") && !valid_name("-x") && !valid_name("a b") && !valid_name("a/b"));
        assert!(is_full_id(&random_id()));
        assert_ne!(random_id(), random_id());
        assert!(valid_name(&random_name()));
        assert!(
            valid_hostname("web-1") && !valid_hostname("-x") && !valid_hostname(&"a".repeat(64))
        );
    }

    #[test]
    fn ages_read_like_docker() {
        assert_eq!(human_age(Duration::from_millis(300)), "Less than a second");
        assert_eq!(human_age(Duration::from_secs(1)), "1 second");
        assert_eq!(human_age(Duration::from_secs(90)), "About a minute");
        assert_eq!(human_age(Duration::from_secs(7300)), "2 hours");
    }
}
