//! The rules of a backup set, written once for local backups and offsite
//! copies: a set is the copies of one database in one place (the backup
//! directory, or one offsite tier: the tier is a property of the set).
//!
//! - The newest *sound* member is never deleted, however old: when backups
//!   stop, the last good one stays.
//! - A member is *superseded* once a newer sound member exists; only
//!   superseded members past their age may go.
//! - Several databases restore to the newest timestamp they all have.

use crate::catalog::Stamp;

/// What the rules need to know of one member of a set.
pub trait Member {
    fn stamp(&self) -> Stamp;
    fn is_sound(&self) -> bool;
}

impl<M: Member> Member for &M {
    fn stamp(&self) -> Stamp {
        (*self).stamp()
    }

    fn is_sound(&self) -> bool {
        (*self).is_sound()
    }
}

/// The newest sound member's timestamp.
pub fn newest_sound<M: Member>(set: &[M]) -> Option<Stamp> {
    set.iter().filter(|m| m.is_sound()).map(M::stamp).max()
}

/// Whether a newer sound member than `m` exists in `set`.
pub fn is_superseded<M: Member>(set: &[M], m: &M) -> bool {
    newest_sound(set).is_some_and(|n| m.stamp() < n)
}

/// The members retention removes: superseded, and past their age by
/// `past_age` (each place counts age its own way).
pub fn expired<M: Member>(set: &[M], past_age: impl Fn(&M) -> bool) -> Vec<&M> {
    let newest = newest_sound(set);
    set.iter()
        .filter(|m| newest.is_some_and(|n| m.stamp() < n) && past_age(m))
        .collect()
}

/// The newest timestamp present in every one of `sets` (the timestamps each
/// database counts), so several databases come back to one point in time.
pub fn newest_common(sets: &[Vec<Stamp>]) -> Option<Stamp> {
    let (first, rest) = sets.split_first()?;
    first
        .iter()
        .filter(|s| rest.iter().all(|set| set.contains(s)))
        .max()
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct M(&'static str, bool);
    impl Member for M {
        fn stamp(&self) -> Stamp {
            Stamp::parse(&format!("202611{}_020000", self.0)).unwrap()
        }
        fn is_sound(&self) -> bool {
            self.1
        }
    }

    fn days(ms: &[&M]) -> Vec<&'static str> {
        ms.iter().map(|m| m.0).collect()
    }

    #[test]
    fn the_newest_sound_member_is_kept_whatever_its_age() {
        let set = [M("01", true), M("02", true), M("03", false)];
        // Everything is past its age: only the newest sound one stays, and
        // the broken one newer than it (nothing supersedes it).
        assert_eq!(days(&expired(&set, |_| true)), ["01"]);
        assert!(!is_superseded(&set, &set[2]));
        assert!(is_superseded(&set, &set[0]));
        assert_eq!(days(&expired(&set, |m| m.0 == "02")), Vec::<&str>::new());
        let broken = [M("01", false), M("02", false)];
        assert!(expired(&broken, |_| true).is_empty());
    }

    #[test]
    fn newest_common_is_in_every_set() {
        let s = |d: &str| Stamp::parse(&format!("202611{d}_020000")).unwrap();
        let a = vec![s("01"), s("02"), s("03")];
        let b = vec![s("01"), s("02")];
        assert_eq!(newest_common(&[a.clone(), b]), Some(s("02")));
        assert_eq!(newest_common(&[a.clone(), vec![]]), None);
        assert_eq!(newest_common(&[a]), Some(s("03")));
        assert_eq!(newest_common(&[]), None);
    }
}
