//! What garbage collection removes: a pure function over the snapshot graph
//! and the blobs, so the policy can be tested without disks.
//!
//! Rules, in order:
//! - a snapshot marked `keep` (leased, named by a local image, too young)
//!   stays, and so does every ancestor of a kept snapshot (a kept child's
//!   overlay needs its parents' directories);
//! - snapshots are removed children-first: a snapshot is a candidate only
//!   once all its children are gone; among candidates the least recently
//!   used goes first;
//! - with a cap, removal stops as soon as the usage is at or below it;
//!   without one, every snapshot that is not kept goes;
//! - a blob goes when no remaining snapshot's layer names it and it is not
//!   marked `keep` (named by a kept image, or written since a live lease
//!   began). Blobs nothing names at all go first, before any snapshot,
//!   since removing them costs no cache.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

/// A snapshot as the selection sees it.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub id: String,
    pub parent: Option<String>,
    pub size: u64,
    pub last_used: i64,
    /// Must stay (with its ancestors).
    pub keep: bool,
    /// Blobs memoized as this snapshot's layer.
    pub blobs: Vec<String>,
}

/// A blob as the selection sees it.
#[derive(Clone, Debug)]
pub(crate) struct Blob {
    pub size: u64,
    pub keep: bool,
}

/// The outcome: snapshots in removal order (children first), and blobs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Selection {
    pub snapshots: Vec<String>,
    pub blobs: Vec<String>,
}

/// Chooses what to remove; see the module doc for the rules.
pub(crate) fn select(
    nodes: &[Node],
    blobs: &BTreeMap<String, Blob>,
    cap: Option<u64>,
) -> Selection {
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let parent_of = |i: usize| {
        nodes[i]
            .parent
            .as_deref()
            .and_then(|p| index.get(p).copied())
    };
    let mut children = vec![0usize; nodes.len()];
    for i in 0..nodes.len() {
        if let Some(p) = parent_of(i) {
            children[p] += 1;
        }
    }
    // Kept snapshots and their ancestors (the walk stops at anything
    // already kept, so a hostile parent loop ends).
    let mut kept = vec![false; nodes.len()];
    for start in (0..nodes.len()).filter(|&i| nodes[i].keep) {
        let mut cur = Some(start);
        while let Some(i) = cur {
            if kept[i] {
                break;
            }
            kept[i] = true;
            cur = parent_of(i);
        }
    }
    let mut refs: HashMap<&str, usize> = HashMap::new();
    for n in nodes {
        for b in &n.blobs {
            *refs.entry(b.as_str()).or_default() += 1;
        }
    }
    let mut usage: u64 =
        nodes.iter().map(|n| n.size).sum::<u64>() + blobs.values().map(|b| b.size).sum::<u64>();
    let under_cap = |usage: u64| cap.is_some_and(|c| usage <= c);
    let mut out = Selection::default();
    for (digest, b) in blobs {
        if !b.keep && !refs.contains_key(digest.as_str()) {
            out.blobs.push(digest.clone());
            usage = usage.saturating_sub(b.size);
        }
    }
    let mut heap: BinaryHeap<Reverse<(i64, &str, usize)>> = (0..nodes.len())
        .filter(|&i| !kept[i] && children[i] == 0)
        .map(|i| Reverse((nodes[i].last_used, nodes[i].id.as_str(), i)))
        .collect();
    while let Some(Reverse((_, _, i))) = heap.pop() {
        if under_cap(usage) {
            break;
        }
        let n = &nodes[i];
        out.snapshots.push(n.id.clone());
        usage = usage.saturating_sub(n.size);
        for b in &n.blobs {
            let Some(count) = refs.get_mut(b.as_str()) else {
                continue;
            };
            *count -= 1;
            if *count == 0
                && let Some(blob) = blobs.get(b)
                && !blob.keep
            {
                out.blobs.push(b.clone());
                usage = usage.saturating_sub(blob.size);
            }
        }
        if let Some(p) = parent_of(i) {
            children[p] -= 1;
            if children[p] == 0 && !kept[p] {
                heap.push(Reverse((nodes[p].last_used, nodes[p].id.as_str(), p)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, parent: Option<&str>, size: u64, last_used: i64) -> Node {
        Node {
            id: id.into(),
            parent: parent.map(Into::into),
            size,
            last_used,
            keep: false,
            blobs: vec![],
        }
    }

    fn no_blobs() -> BTreeMap<String, Blob> {
        BTreeMap::new()
    }

    #[test]
    fn everything_unkept_goes_children_first() {
        // a <- b <- c, and a <- d; c is the oldest but still goes after nothing.
        let nodes = vec![
            node("a", None, 1, 10),
            node("b", Some("a"), 1, 5),
            node("c", Some("b"), 1, 1),
            node("d", Some("a"), 1, 7),
        ];
        let s = select(&nodes, &no_blobs(), None);
        assert_eq!(s.snapshots.len(), 4);
        let pos = |id: &str| s.snapshots.iter().position(|x| x == id).unwrap();
        assert!(pos("c") < pos("b"));
        assert!(pos("b") < pos("a"));
        assert!(pos("d") < pos("a"));
    }

    #[test]
    fn a_kept_child_keeps_its_whole_chain() {
        let mut nodes = vec![
            node("a", None, 1, 1),
            node("b", Some("a"), 1, 1),
            node("c", Some("b"), 1, 1),
        ];
        nodes[2].keep = true;
        nodes.push(node("x", Some("a"), 1, 1));
        let s = select(&nodes, &no_blobs(), None);
        assert_eq!(s.snapshots, vec!["x".to_string()]);
    }

    #[test]
    fn a_cap_removes_least_recently_used_first_and_stops_under_it() {
        let nodes = vec![
            node("old", None, 100, 1),
            node("mid", None, 100, 2),
            node("new", None, 100, 3),
        ];
        let s = select(&nodes, &no_blobs(), Some(150));
        assert_eq!(s.snapshots, vec!["old".to_string(), "mid".to_string()]);
        let s = select(&nodes, &no_blobs(), Some(300));
        assert!(s.snapshots.is_empty());
    }

    #[test]
    fn a_cap_never_removes_a_parent_before_its_newer_child() {
        // The parent is older, but its child must go first.
        let nodes = vec![
            node("p", None, 100, 1),
            node("c", Some("p"), 100, 5),
            node("other", None, 100, 3),
        ];
        let s = select(&nodes, &no_blobs(), Some(150));
        assert_eq!(s.snapshots, vec!["other".to_string(), "c".to_string()]);
    }

    #[test]
    fn blobs_go_with_the_last_snapshot_that_names_them() {
        let mut nodes = vec![node("a", None, 10, 1), node("b", None, 10, 2)];
        nodes[0].blobs = vec!["shared".into(), "only-a".into()];
        nodes[1].blobs = vec!["shared".into()];
        nodes[1].keep = true;
        let mut blobs = BTreeMap::new();
        blobs.insert(
            "shared".to_string(),
            Blob {
                size: 5,
                keep: false,
            },
        );
        blobs.insert(
            "only-a".to_string(),
            Blob {
                size: 5,
                keep: false,
            },
        );
        blobs.insert(
            "rooted".to_string(),
            Blob {
                size: 5,
                keep: true,
            },
        );
        blobs.insert(
            "garbage".to_string(),
            Blob {
                size: 5,
                keep: false,
            },
        );
        let s = select(&nodes, &blobs, None);
        assert_eq!(s.snapshots, vec!["a".to_string()]);
        let mut removed = s.blobs.clone();
        removed.sort();
        assert_eq!(removed, vec!["garbage".to_string(), "only-a".to_string()]);
    }

    #[test]
    fn unreferenced_blobs_count_towards_the_cap_before_any_snapshot() {
        let nodes = vec![node("a", None, 100, 1)];
        let mut blobs = BTreeMap::new();
        blobs.insert(
            "garbage".to_string(),
            Blob {
                size: 100,
                keep: false,
            },
        );
        let s = select(&nodes, &blobs, Some(100));
        assert!(s.snapshots.is_empty());
        assert_eq!(s.blobs, vec!["garbage".to_string()]);
    }

    #[test]
    fn a_parent_loop_neither_hangs_nor_removes_anything_kept() {
        let mut nodes = vec![node("a", Some("b"), 1, 1), node("b", Some("a"), 1, 1)];
        let s = select(&nodes, &no_blobs(), None);
        // Each has a child, so neither becomes a leaf.
        assert!(s.snapshots.is_empty());
        nodes[0].keep = true;
        let s = select(&nodes, &no_blobs(), None);
        assert!(s.snapshots.is_empty());
    }
}
