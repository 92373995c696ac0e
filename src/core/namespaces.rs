//! The namespaces the automaton watches and acts in: WATCH_NAMESPACES (a list, or `*`),
//! narrowed by SHARD=i/N to the namespaces whose hash falls in shard `i`, so N replica sets
//! cover a cluster with no coordination beyond their own Leases.

use std::fmt;

use crate::core::values::{is_dns1123_label, ValueError};

/// The namespaces the automaton watches and acts in (`WATCH_NAMESPACES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    /// `*`: the whole cluster.
    All,
    /// `*` with SHARD=i/N: the namespaces whose hash falls in this shard, read through
    /// watches across the cluster that drop what the shard does not own.
    Sharded(Shard),
    /// These namespaces: sorted and distinct.
    List(Vec<String>),
}

impl Namespaces {
    /// Only `home` (WATCH_NAMESPACES unset).
    pub fn only(home: &str) -> Namespaces {
        Namespaces::List(vec![home.to_owned()])
    }

    /// Parses `*` or a comma-separated list of namespace names.
    pub fn parse(text: &str) -> Result<Namespaces, ValueError> {
        if text.trim() == "*" {
            return Ok(Namespaces::All);
        }
        let mut names: Vec<String> = text
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(bad) = names.iter().find(|n| !is_dns1123_label(n)) {
            return Err(ValueError(format!(
                "`{bad}` is not a namespace name (lowercase letters, digits, `-`; at most 63)"
            )));
        }
        if names.is_empty() {
            return Err(ValueError(
                "expected `*` or a comma-separated list of namespaces".to_owned(),
            ));
        }
        names.sort_unstable();
        names.dedup();
        Ok(Namespaces::List(names))
    }

    /// Only what `shard` owns: a list keeps its namespaces of the shard (the API server
    /// then sends nothing of the others), `*` becomes [`Namespaces::Sharded`].
    pub fn sharded(self, shard: Shard) -> Namespaces {
        match self {
            Namespaces::All | Namespaces::Sharded(_) => Namespaces::Sharded(shard),
            Namespaces::List(names) => {
                Namespaces::List(names.into_iter().filter(|n| shard.owns(n)).collect())
            }
        }
    }

    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Namespaces::All => true,
            Namespaces::Sharded(shard) => shard.owns(namespace),
            Namespaces::List(names) => names.binary_search_by(|n| n.as_str().cmp(namespace)).is_ok(),
        }
    }

    /// One entry per watch a namespaced resource needs: each namespace, or `None` for one
    /// watch over the whole cluster.
    pub fn watches(&self) -> Vec<Option<&str>> {
        match self {
            Namespaces::All | Namespaces::Sharded(_) => vec![None],
            Namespaces::List(names) => names.iter().map(|n| Some(n.as_str())).collect(),
        }
    }
}

impl fmt::Display for Namespaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Namespaces::All => f.write_str("*"),
            Namespaces::Sharded(shard) => write!(f, "* (shard {shard})"),
            Namespaces::List(names) => f.write_str(&names.join(",")),
        }
    }
}

/// SHARD=i/N: this replica set owns the namespaces whose name hashes to `i` modulo `N`.
/// The hash is FNV-1a (64 bits) of the name, fixed here so that every version and every
/// machine splits a cluster the same way: two shards never both own a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// More shards than this is a typo, not a cluster.
const MAX_SHARDS: u32 = 1024;

impl Shard {
    /// Parses `i/N` with `0 <= i < N <= 1024`.
    pub fn parse(text: &str) -> Result<Shard, ValueError> {
        let bad = || {
            ValueError(format!(
                "expected `INDEX/COUNT` with 0 <= INDEX < COUNT <= {MAX_SHARDS}, found `{text}`"
            ))
        };
        let (index, count) = text.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = index.trim().parse().map_err(|_| bad())?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 || count > MAX_SHARDS || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether `namespace` is this shard's.
    pub fn owns(self, namespace: &str) -> bool {
        fnv1a(namespace.as_bytes()) % u64::from(self.count) == u64::from(self.index)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watched_namespaces_parse_from_a_list_or_a_star() {
        let list = Namespaces::parse(" team-b,team-a , team-b,").unwrap();
        assert_eq!(list, Namespaces::List(vec!["team-a".into(), "team-b".into()]));
        assert_eq!(list.to_string(), "team-a,team-b");
        assert!(list.contains("team-a") && !list.contains("team-c"));
        assert_eq!(list.watches(), vec![Some("team-a"), Some("team-b")]);
        let all = Namespaces::parse("*").unwrap();
        assert!(all.contains("anything"));
        assert_eq!(all.watches(), vec![None]);
        for bad in ["", " , ", "Team-A", "a.b", "a,*"] {
            assert!(Namespaces::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_split_namespaces_by_a_fixed_hash_each_to_exactly_one() {
        // FNV-1a's published test vectors: the split never changes between versions.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        let shards: Vec<Shard> = (0..3).map(|i| Shard::parse(&format!("{i}/3")).unwrap()).collect();
        let names: Vec<String> = (0..3000).map(|i| format!("team-{i}")).collect();
        let mut per_shard = [0usize; 3];
        for name in &names {
            let owners: Vec<usize> = (0..3).filter(|&i| shards[i].owns(name)).collect();
            assert_eq!(owners.len(), 1, "{name}: {owners:?}");
            per_shard[owners[0]] += 1;
        }
        assert!(
            per_shard.iter().all(|&n| (900..=1100).contains(&n)),
            "{per_shard:?}"
        );
        let list = Namespaces::List(names.clone()).sharded(shards[1]);
        let Namespaces::List(kept) = &list else {
            panic!("{list:?}")
        };
        assert_eq!(kept.len(), per_shard[1]);
        assert!(kept.iter().all(|n| shards[1].owns(n)));
        let all = Namespaces::All.sharded(shards[2]);
        assert_eq!(all.to_string(), "* (shard 2/3)");
        assert_eq!(all.watches(), vec![None]);
        assert_eq!(names.iter().filter(|n| all.contains(n)).count(), per_shard[2]);
        for bad in ["3/3", "1", "-1/2", "0/0", "0/2000", "a/b"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Shard::parse(" 2/4 ").unwrap(), Shard { index: 2, count: 4 });
    }
}
