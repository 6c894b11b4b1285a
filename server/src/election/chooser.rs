//! Who should be master among eligible candidates (Brooklyn's `AlphabeticMasterChooser` order):
//! priority, release over pre-release, higher version, current state, then the lower node id.

use haplane::{NodeId, NodeState};
use std::cmp::Ordering;

/// What the chooser needs to know of one eligible node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub node_id: &'a NodeId,
    pub priority: i64,
    pub version: &'a str,
    pub state: NodeState,
}

/// The best candidate, or `None` for an empty slate. The result does not depend on input order.
pub fn choose<'a>(candidates: &[Candidate<'a>]) -> Option<&'a NodeId> {
    candidates
        .iter()
        .max_by(|a, b| preference(a, b))
        .map(|best| best.node_id)
}

/// `Greater` when `a` is the better master.
fn preference(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
    a.priority
        .cmp(&b.priority)
        .then_with(|| is_release(a.version).cmp(&is_release(b.version)))
        .then_with(|| compare_versions(a.version, b.version))
        .then_with(|| state_rank(a.state).cmp(&state_rank(b.state)))
        // Lower id is better, so the comparison is reversed.
        .then_with(|| b.node_id.cmp(a.node_id))
}

fn state_rank(state: NodeState) -> u8 {
    match state {
        NodeState::Master => 3,
        NodeState::HotStandby => 2,
        NodeState::Standby => 1,
        _ => 0,
    }
}

/// A release has no pre-release suffix (`1.2.0` is, `1.2.0-SNAPSHOT`, `1.2.0-rc1`, `1.3-dev` are not).
pub fn is_release(version: &str) -> bool {
    !version.contains('-')
}

/// Natural order of versions: numeric runs compare as numbers (`1.10 > 1.9`), other text as text.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let mut left = tokens(a);
    let mut right = tokens(b);
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x, y) {
                    (Token::Number(x), Token::Number(y)) => {
                        let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                        x.len().cmp(&y.len()).then_with(|| x.cmp(y))
                    }
                    (Token::Number(_), Token::Text(_)) => Ordering::Greater,
                    (Token::Text(_), Token::Number(_)) => Ordering::Less,
                    (Token::Text(x), Token::Text(y)) => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

#[derive(Debug)]
enum Token<'a> {
    Number(&'a str),
    Text(&'a str),
}

/// Splits a version into runs of digits and runs of other characters, dropping `.` and `-`.
fn tokens(version: &str) -> impl Iterator<Item = Token<'_>> {
    let mut rest = version;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches(['.', '-']);
        let first = rest.chars().next()?;
        let digits = first.is_ascii_digit();
        let end = rest
            .find(|c: char| c == '.' || c == '-' || c.is_ascii_digit() != digits)
            .unwrap_or(rest.len());
        let (token, tail) = rest.split_at(end);
        rest = tail;
        Some(if digits {
            Token::Number(token)
        } else {
            Token::Text(token)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(text: &str) -> NodeId {
        NodeId::parse(text).unwrap()
    }

    fn pick(nodes: &[(NodeId, i64, &str, NodeState)]) -> String {
        let candidates: Vec<_> = nodes
            .iter()
            .map(|(node_id, priority, version, state)| Candidate {
                node_id,
                priority: *priority,
                version,
                state: *state,
            })
            .collect();
        choose(&candidates).unwrap().to_string()
    }

    #[test]
    fn each_rule_decides_in_order() {
        let hs = NodeState::HotStandby;
        // 1. priority beats everything below it.
        assert_eq!(
            pick(&[
                (id("a"), 0, "2.0", NodeState::Master),
                (id("b"), 1, "1.0-SNAPSHOT", NodeState::Standby)
            ]),
            "b"
        );
        // 2. release over pre-release.
        assert_eq!(
            pick(&[(id("a"), 0, "2.0-SNAPSHOT", hs), (id("b"), 0, "1.0", hs)]),
            "b"
        );
        assert_eq!(
            pick(&[(id("a"), 0, "2.0-rc1", hs), (id("b"), 0, "1.0", hs)]),
            "b"
        );
        // 3. higher version, in natural order.
        assert_eq!(
            pick(&[(id("a"), 0, "1.9", hs), (id("b"), 0, "1.10", hs)]),
            "b"
        );
        // 4. state MASTER > HOT_STANDBY > STANDBY.
        assert_eq!(
            pick(&[(id("a"), 0, "1", NodeState::Standby), (id("b"), 0, "1", hs)]),
            "b"
        );
        assert_eq!(
            pick(&[(id("a"), 0, "1", hs), (id("b"), 0, "1", NodeState::Master)]),
            "b"
        );
        // 5. lower id.
        assert_eq!(pick(&[(id("b"), 0, "1", hs), (id("a"), 0, "1", hs)]), "a");
    }

    #[test]
    fn versions_compare_naturally() {
        assert_eq!(compare_versions("1.10", "1.9"), Ordering::Greater);
        assert_eq!(compare_versions("1.2", "1.2.0"), Ordering::Less);
        assert_eq!(compare_versions("01.2", "1.2"), Ordering::Equal);
        assert_eq!(compare_versions("1.0-rc2", "1.0-rc10"), Ordering::Less);
        assert!(!is_release("1.0-SNAPSHOT") && !is_release("1.0-dev") && is_release("1.0"));
    }

    #[test]
    fn nobody_is_chosen_from_nobody() {
        assert_eq!(choose(&[]), None);
    }

    fn arb_state() -> impl Strategy<Value = NodeState> {
        prop_oneof![
            Just(NodeState::Standby),
            Just(NodeState::HotStandby),
            Just(NodeState::Master),
            Just(NodeState::Initializing)
        ]
    }

    fn arb_nodes() -> impl Strategy<Value = Vec<(NodeId, i64, String, NodeState)>> {
        prop::collection::btree_map(
            "[a-z0-9]{1,6}",
            (
                -3i64..3,
                "[0-9]{1,2}(\\.[0-9]{1,2})?(-SNAPSHOT|-rc[0-9])?",
                arb_state(),
            ),
            1..8,
        )
        .prop_map(|nodes| {
            nodes
                .into_iter()
                .map(|(name, (p, v, s))| (NodeId::parse(&name).unwrap(), p, v, s))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn choice_is_independent_of_order_and_deterministic(nodes in arb_nodes(), seed in any::<u64>()) {
            let as_refs = |nodes: &[(NodeId, i64, String, NodeState)]| -> String {
                let owned: Vec<_> = nodes.iter().map(|(i, p, v, s)| (i.clone(), *p, v.as_str(), *s)).collect();
                pick(&owned)
            };
            let first = as_refs(&nodes);
            let mut shuffled = nodes.clone();
            let len = shuffled.len();
            shuffled.rotate_left((seed as usize) % len);
            if seed % 2 == 0 { shuffled.reverse(); }
            prop_assert_eq!(&as_refs(&shuffled), &first);
            prop_assert_eq!(as_refs(&nodes), first);
        }

        #[test]
        fn the_winner_is_one_of_the_candidates_and_has_top_priority(nodes in arb_nodes()) {
            let owned: Vec<_> = nodes.iter().map(|(i, p, v, s)| (i.clone(), *p, v.as_str(), *s)).collect();
            let winner = pick(&owned);
            let top = nodes.iter().map(|n| n.1).max().unwrap();
            let entry = nodes.iter().find(|n| n.0.as_str() == winner);
            prop_assert!(entry.is_some());
            prop_assert_eq!(entry.unwrap().1, top);
        }
    }
}
