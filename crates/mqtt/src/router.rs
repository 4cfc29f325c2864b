//! The subscription index of one namespace: a trie over topic levels, so a
//! publish costs the depth of its topic, not the number of subscriptions.

use std::collections::HashMap;
use std::sync::Arc;

use crate::session::{Session, SubOptions};

/// Subscriptions of one namespace, by filter level.
#[derive(Default)]
pub struct Router {
    root: Node,
    len: usize,
}

#[derive(Default)]
struct Node {
    children: HashMap<String, Node>,
    /// Filters that end at this node.
    exact: HashMap<u64, (Arc<Session>, SubOptions)>,
    /// Filters that end with `#` below this node.
    rest: HashMap<u64, (Arc<Session>, SubOptions)>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.exact.is_empty() && self.rest.is_empty()
    }
}

impl Router {
    /// Adds or replaces `session`'s subscription to `filter` (a valid filter).
    pub fn insert(&mut self, filter: &str, session: &Arc<Session>, opts: SubOptions) {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                if node
                    .rest
                    .insert(session.serial, (session.clone(), opts))
                    .is_none()
                {
                    self.len += 1;
                }
                return;
            }
            node = node.children.entry(level.to_string()).or_default();
        }
        if node
            .exact
            .insert(session.serial, (session.clone(), opts))
            .is_none()
        {
            self.len += 1;
        }
    }

    /// Removes `serial`'s subscription to `filter`; true if there was one.
    pub fn remove(&mut self, filter: &str, serial: u64) -> bool {
        let levels: Vec<&str> = filter.split('/').collect();
        let removed = remove_in(&mut self.root, &levels, serial);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Every subscription matching `topic`, merged per session (highest QoS,
    /// every subscription identifier).
    pub fn matches(&self, topic: &str) -> Vec<(Arc<Session>, SubOptions)> {
        let levels: Vec<&str> = topic.split('/').collect();
        let mut found: HashMap<u64, (Arc<Session>, SubOptions)> = HashMap::new();
        let dollar = topic.starts_with('$');
        walk(&self.root, &levels, 0, dollar, &mut found);
        found.into_values().collect()
    }

    /// Number of subscriptions.
    pub fn len(&self) -> usize {
        self.len
    }
}

fn remove_in(node: &mut Node, levels: &[&str], serial: u64) -> bool {
    match levels {
        [] => node.exact.remove(&serial).is_some(),
        ["#"] => node.rest.remove(&serial).is_some(),
        [first, rest @ ..] => {
            let Some(child) = node.children.get_mut(*first) else {
                return false;
            };
            let removed = remove_in(child, rest, serial);
            if child.is_empty() {
                node.children.remove(*first);
            }
            removed
        }
    }
}

fn walk(
    node: &Node,
    levels: &[&str],
    depth: usize,
    dollar: bool,
    found: &mut HashMap<u64, (Arc<Session>, SubOptions)>,
) {
    // Wildcards in the first level never match a `$` topic.
    let wild = !(dollar && depth == 0);
    if wild {
        merge(found, &node.rest);
    }
    let Some(level) = levels.get(depth) else {
        merge(found, &node.exact);
        return;
    };
    if wild {
        if let Some(plus) = node.children.get("+") {
            walk(plus, levels, depth + 1, dollar, found);
        }
    }
    if *level != "+" {
        if let Some(child) = node.children.get(*level) {
            walk(child, levels, depth + 1, dollar, found);
        }
    }
}

fn merge(
    found: &mut HashMap<u64, (Arc<Session>, SubOptions)>,
    subs: &HashMap<u64, (Arc<Session>, SubOptions)>,
) {
    for (serial, (session, opts)) in subs {
        found
            .entry(*serial)
            .and_modify(|(_, have)| have.merge(opts))
            .or_insert_with(|| (session.clone(), opts.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Space;
    use rumqttc::v5::mqttbytes::QoS;

    fn session(serial: u64) -> Arc<Session> {
        Session::new(
            serial,
            Space::Device(Default::default()),
            format!("c{serial}"),
        )
    }

    fn opts(qos: QoS, id: Option<usize>) -> SubOptions {
        SubOptions {
            qos,
            ids: id.into_iter().collect(),
            ..SubOptions::default()
        }
    }

    fn serials(r: &Router, topic: &str) -> Vec<u64> {
        let mut s: Vec<u64> = r.matches(topic).iter().map(|(s, _)| s.serial).collect();
        s.sort_unstable();
        s
    }

    #[test]
    fn trie_matches_like_the_filter_rules() {
        let mut r = Router::default();
        let (a, b, c, d) = (session(1), session(2), session(3), session(4));
        r.insert("a/+/c", &a, opts(QoS::AtMostOnce, None));
        r.insert("a/#", &b, opts(QoS::AtMostOnce, None));
        r.insert("#", &c, opts(QoS::AtMostOnce, None));
        r.insert("$devices/+/telemetry", &d, opts(QoS::AtMostOnce, None));
        assert_eq!(serials(&r, "a/b/c"), vec![1, 2, 3]);
        assert_eq!(serials(&r, "a"), vec![2, 3]);
        assert_eq!(serials(&r, "x"), vec![3]);
        assert_eq!(serials(&r, "$devices/d1/telemetry"), vec![4]);
        assert_eq!(r.len(), 4);
        assert!(r.remove("a/#", 2));
        assert!(!r.remove("a/#", 2));
        assert_eq!(serials(&r, "a/b/c"), vec![1, 3]);
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn overlapping_subscriptions_deliver_once_at_the_highest_qos() {
        let mut r = Router::default();
        let a = session(1);
        r.insert("t/+", &a, opts(QoS::AtMostOnce, Some(1)));
        r.insert("t/x", &a, opts(QoS::ExactlyOnce, Some(2)));
        let m = r.matches("t/x");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].1.qos, QoS::ExactlyOnce);
        let mut ids = m[0].1.ids();
        ids.sort_unstable();
        assert_eq!(ids, vec![1, 2]);
    }
}
