//! Topic and channel names: `^[.a-zA-Z0-9_-]+(#ephemeral)?$`, 1 to 64 bytes in all.

/// The longest valid name, the `#ephemeral` suffix included.
pub const MAX_NAME_LENGTH: usize = 64;

const EPHEMERAL_SUFFIX: &str = "#ephemeral";

fn is_valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_NAME_LENGTH {
        return false;
    }
    let stem = name.strip_suffix(EPHEMERAL_SUFFIX).unwrap_or(name);
    !stem.is_empty()
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub fn is_valid_topic_name(name: &str) -> bool {
    is_valid_name(name)
}

pub fn is_valid_channel_name(name: &str) -> bool {
    is_valid_name(name)
}

/// Ephemeral topics and channels never touch disk and vanish when unused.
pub fn is_ephemeral(name: &str) -> bool {
    name.ends_with(EPHEMERAL_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_upstream_alphabet() {
        for name in ["a", "test", "a.b-c_D9", "x#ephemeral", &"a".repeat(64)] {
            assert!(is_valid_topic_name(name), "{name}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        let long = format!("{}#ephemeral", "a".repeat(55));
        for name in [
            "",
            "bad!name",
            "a b",
            "#ephemeral",
            "a#eph",
            "é",
            &"a".repeat(65),
            &long,
        ] {
            assert!(!is_valid_channel_name(name), "{name}");
        }
        assert!(is_valid_channel_name(&format!(
            "{}#ephemeral",
            "a".repeat(54)
        )));
    }
}
