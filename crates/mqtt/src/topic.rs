//! Topic names and filters: validation, and matching with MQTT's `$` rule
//! (a filter starting with a wildcard never matches a topic starting with `$`).

/// Most levels a topic or filter may have (as Mosquitto): the subscription
/// index walks levels recursively, so depth must be bounded.
pub const MAX_LEVELS: usize = 200;

fn shallow(t: &str) -> bool {
    t.bytes().filter(|b| *b == b'/').count() < MAX_LEVELS
}

/// Whether `topic` may be published to: non-empty, no wildcards, no NUL,
/// at most [`MAX_LEVELS`] levels.
pub fn valid_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0']) && shallow(topic)
}

/// Whether `filter` is a well-formed subscription: `+` fills a whole level,
/// `#` fills the last one.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') || !shallow(filter) {
        return false;
    }
    let levels = filter.split('/').count();
    filter.split('/').enumerate().all(|(i, level)| {
        (!level.contains('#') || (level == "#" && i + 1 == levels))
            && (!level.contains('+') || level == "+")
    })
}

/// Whether a (valid) `topic` matches a (valid) `filter`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(t) if f == "+" || f == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_validated() {
        for ok in [
            "a",
            "a/b",
            "+",
            "#",
            "a/+/c",
            "a/#",
            "+/+",
            "/",
            "$devices/+/telemetry",
        ] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in ["", "a/#/c", "a#", "a/b+", "##", "a/\0"] {
            assert!(!valid_filter(bad), "{bad}");
        }
        let deep = "a/".repeat(MAX_LEVELS) + "a";
        assert!(!valid_filter(&deep) && !valid_name(&deep));
        let ok = "a/".repeat(MAX_LEVELS - 1) + "a";
        assert!(valid_filter(&ok) && valid_name(&ok));
        assert!(valid_name("a/b") && valid_name("/"));
        assert!(!valid_name("a/+") && !valid_name("#") && !valid_name(""));
    }

    #[test]
    fn matching_follows_the_spec() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(!matches("a/+/c", "a/b/d"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("#", "a/b"));
        assert!(matches("+/+", "/x"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        // `$` topics are not matched by leading wildcards, only explicitly.
        assert!(!matches("#", "$devices/d/telemetry"));
        assert!(!matches("+/d/telemetry", "$devices/d/telemetry"));
        assert!(matches("$devices/+/telemetry", "$devices/d/telemetry"));
        assert!(matches("$devices/#", "$devices/d/telemetry"));
    }
}
