//! Shared subscriptions (`$share/{group}/{filter}`, MQTT 5 section 4.8.2):
//! each message that matches a group's filter goes to one of its members,
//! in turn, preferring connected ones; what a member that leaves had not
//! acknowledged goes to another.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::session::{Session, SubOptions};
use crate::topic;

/// The group and the filter of a `$share/{group}/{filter}` subscription,
/// if it is one (`None` for a plain filter).
pub fn parse(subscription: &str) -> Option<Result<(&str, &str), ()>> {
    let rest = subscription.strip_prefix("$share/")?;
    let Some((group, filter)) = rest.split_once('/') else {
        return Some(Err(()));
    };
    let ok = !group.is_empty() && !group.contains(['+', '#']) && topic::valid_filter(filter);
    Some(if ok { Ok((group, filter)) } else { Err(()) })
}

/// One group: its filter, its members and whose turn is next.
struct Group {
    filter: String,
    members: Vec<(Arc<Session>, SubOptions)>,
    next: usize,
}

impl Group {
    /// The next member in turn other than `except`: a connected one if there
    /// is one, else a persistent session that will get it when it returns.
    fn pick(&mut self, except: u64) -> Option<(Arc<Session>, SubOptions)> {
        let n = self.members.len();
        let order: Vec<usize> = (0..n).map(|i| (self.next + i) % n).collect();
        let eligible = |i: &&usize| self.members[**i].0.serial != except;
        let chosen = order
            .iter()
            .filter(eligible)
            .find(|i| self.members[**i].0.attached())
            .or_else(|| order.iter().find(eligible))
            .copied()?;
        self.next = (chosen + 1) % n;
        Some(self.members[chosen].clone())
    }
}

/// The shared subscriptions of one namespace, by subscription string.
#[derive(Default)]
pub struct SharedGroups {
    groups: BTreeMap<Arc<str>, Group>,
}

impl SharedGroups {
    /// Adds (or updates) `session` as a member of `subscription`'s group.
    pub fn insert(
        &mut self,
        subscription: &str,
        filter: &str,
        session: &Arc<Session>,
        opts: SubOptions,
    ) {
        let group = self
            .groups
            .entry(Arc::from(subscription))
            .or_insert_with(|| Group {
                filter: filter.to_string(),
                members: Vec::new(),
                next: 0,
            });
        match group
            .members
            .iter_mut()
            .find(|(s, _)| s.serial == session.serial)
        {
            Some(member) => member.1 = opts,
            None => group.members.push((session.clone(), opts)),
        }
    }

    /// Removes member `serial` from `subscription`'s group; true if it was one.
    pub fn remove(&mut self, subscription: &str, serial: u64) -> bool {
        let Some(group) = self.groups.get_mut(subscription) else {
            return false;
        };
        let before = group.members.len();
        group.members.retain(|(s, _)| s.serial != serial);
        let removed = group.members.len() < before;
        if group.members.is_empty() {
            self.groups.remove(subscription);
        } else {
            group.next %= group.members.len();
        }
        removed
    }

    /// Whether there is no group.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// For each group whose filter matches `topic`, the member whose turn it
    /// is, with the group's subscription string.
    pub fn pick(&mut self, topic_name: &str) -> Vec<(Arc<Session>, SubOptions, Arc<str>)> {
        self.groups
            .iter_mut()
            .filter(|(_, g)| topic::matches(&g.filter, topic_name))
            .filter_map(|(key, g)| g.pick(0).map(|(s, o)| (s, o, key.clone())))
            .collect()
    }

    /// Another member of `subscription`'s group than `except`, for a message
    /// `except` will not acknowledge.
    pub fn pick_other(
        &mut self,
        subscription: &str,
        except: u64,
    ) -> Option<(Arc<Session>, SubOptions, Arc<str>)> {
        let key = self.groups.get_key_value(subscription)?.0.clone();
        let group = self.groups.get_mut(subscription)?;
        group.pick(except).map(|(s, o)| (s, o, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Space;
    use std::time::Duration;

    #[test]
    fn subscriptions_are_parsed() {
        assert_eq!(parse("a/b"), None);
        assert_eq!(parse("$share/g/a/+"), Some(Ok(("g", "a/+"))));
        for bad in [
            "$share/g",
            "$share//a",
            "$share/g+/a",
            "$share/g/a/#/b",
            "$share/g/",
        ] {
            assert_eq!(parse(bad), Some(Err(())), "{bad}");
        }
    }

    #[test]
    fn members_take_turns_connected_ones_first() {
        let mut groups = SharedGroups::default();
        let sessions: Vec<Arc<Session>> = (1..=3)
            .map(|i| Session::new(i, Space::Device(Default::default()), format!("c{i}")))
            .collect();
        let _kicks: Vec<_> = sessions[..2]
            .iter()
            .map(|s| s.attach(s.serial, Duration::ZERO))
            .collect();
        for s in &sessions {
            groups.insert("$share/g/t/+", "t/+", s, SubOptions::default());
        }
        let picked: Vec<u64> = (0..4).map(|_| groups.pick("t/x")[0].0.serial).collect();
        // Session 3 is not connected: 1 and 2 alternate.
        assert_eq!(picked, vec![1, 2, 1, 2]);
        assert!(groups.pick("u/x").is_empty());
        assert_eq!(groups.pick_other("$share/g/t/+", 1).unwrap().0.serial, 2);
        assert!(groups.remove("$share/g/t/+", 2));
        assert_eq!(groups.pick_other("$share/g/t/+", 1).unwrap().0.serial, 3);
        assert!(groups.remove("$share/g/t/+", 1) && groups.remove("$share/g/t/+", 3));
        assert!(groups.is_empty());
    }
}
