//! How backup files are named, locally and offsite alike: one function per
//! name, and the parser that reads them back.
//!
//! `order_db_20261125_020000.dump.gz` is the dump of `order_db` at that
//! stamp; `order_db_20261125_020000.manifest.json` its manifest;
//! `order_db_20261125_020000.dump.gz.age` the same dump, encrypted (see
//! [`crate::pipeline::encryption`]), with the same manifest name. Offsite
//! blob names add `<prefix><tier>/<dbname>/` in front ([`crate::offsite`]).

use crate::catalog::Stamp;
use crate::config::Database;

pub const DUMP_SUFFIX: &str = ".dump.gz";
pub const MANIFEST_SUFFIX: &str = ".manifest.json";
/// An encrypted dump: the gzip file, then age.
pub const ENCRYPTED_SUFFIX: &str = ".dump.gz.age";

/// The configuration archive (`[config_backup]`): a gzip tar, the member of
/// its set as a dump is of a database's (`config_20261125_020000.tar.gz`,
/// with `config_20261125_020000.manifest.json`).
pub const TAR_SUFFIX: &str = ".tar.gz";
/// An encrypted configuration archive: the gzip tar, then age.
pub const ENCRYPTED_TAR_SUFFIX: &str = ".tar.gz.age";

/// The configuration archive's name, encrypted or not.
pub fn tar_name_as(set: &str, stamp: &Stamp, encrypted: bool) -> String {
    let suffix = [TAR_SUFFIX, ENCRYPTED_TAR_SUFFIX][usize::from(encrypted)];
    format!("{set}_{stamp}{suffix}")
}

fn tar_stem(name: &str) -> Option<&str> {
    name.strip_suffix(ENCRYPTED_TAR_SUFFIX)
        .or_else(|| name.strip_suffix(TAR_SUFFIX))
}

pub fn dump_name(dbname: &str, stamp: &Stamp) -> String {
    format!("{dbname}_{stamp}{DUMP_SUFFIX}")
}

/// The dump's name, encrypted or not.
pub fn dump_name_as(dbname: &str, stamp: &Stamp, encrypted: bool) -> String {
    let suffix = if encrypted {
        ENCRYPTED_SUFFIX
    } else {
        DUMP_SUFFIX
    };
    format!("{dbname}_{stamp}{suffix}")
}

/// The file part of a blob name (`daily/o/x.dump.gz` -> `x.dump.gz`).
pub fn file_part(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// Whether a dump's file or blob name is an encrypted one.
pub fn is_encrypted(name: &str) -> bool {
    name.ends_with(ENCRYPTED_SUFFIX) || name.ends_with(ENCRYPTED_TAR_SUFFIX)
}

/// The stem of a dump's name, without either suffix.
fn dump_stem(name: &str) -> Option<&str> {
    name.strip_suffix(ENCRYPTED_SUFFIX)
        .or_else(|| name.strip_suffix(DUMP_SUFFIX))
        .or_else(|| tar_stem(name))
}

pub fn manifest_name(dbname: &str, stamp: &Stamp) -> String {
    manifest_of(&dump_name(dbname, stamp))
}

/// The manifest beside a dump: `x.dump.gz` (or `x.dump.gz.age`) ->
/// `x.manifest.json`, for file names and blob names (`daily/o/x.dump.gz`)
/// alike.
pub fn manifest_of(dump: &str) -> String {
    let stem = dump_stem(dump).unwrap_or(dump);
    format!("{stem}{MANIFEST_SUFFIX}")
}

/// What a file name of ours is: a dump or a manifest of `dbname`, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dump,
    Manifest,
}

/// `order_db_20261125_020000.dump.gz` -> (stamp, Dump) for dbname `order_db`.
pub fn parse_file_name(name: &str, dbname: &str) -> Option<(Stamp, FileKind)> {
    let rest = name.strip_prefix(dbname)?.strip_prefix('_')?;
    let (stem, kind) = if let Some(s) = dump_stem(rest) {
        (s, FileKind::Dump)
    } else {
        (rest.strip_suffix(MANIFEST_SUFFIX)?, FileKind::Manifest)
    };
    Stamp::parse(stem).ok().map(|s| (s, kind))
}

/// `order_db_20261125_020000.dump.gz` -> (order_db's config, stamp), matching
/// only configured dbnames so `order_db` and `order_db_x` never mix.
pub fn parse_dump_name<'a>(name: &str, dbs: &[&'a Database]) -> Option<(&'a Database, Stamp)> {
    dbs.iter()
        .find_map(|db| match parse_file_name(name, &db.dbname)? {
            (s, FileKind::Dump) if is_kind_of(name, db) => Some((*db, s)),
            _ => None,
        })
}

/// Whether a dump name has the form of `db`'s kind: a tar for the
/// configuration archive, a pg_dump file for a database (a stray
/// `order_db_<stamp>.tar.gz` is never taken for a dump of order_db).
pub fn is_kind_of(name: &str, db: &Database) -> bool {
    tar_stem(name).is_some() == (db.kind == crate::config::SetKind::Config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let s = Stamp::parse("20261125_020000").unwrap();
        assert_eq!(dump_name("o", &s), "o_20261125_020000.dump.gz");
        assert_eq!(manifest_name("o", &s), "o_20261125_020000.manifest.json");
        assert_eq!(
            manifest_of("p/daily/o/o_20261125_020000.dump.gz"),
            "p/daily/o/o_20261125_020000.manifest.json"
        );
        assert_eq!(
            parse_file_name(&manifest_name("o", &s), "o"),
            Some((s, FileKind::Manifest))
        );
        assert_eq!(parse_file_name("o_x_20261125_020000.dump.gz", "o"), None);
        let sealed = dump_name_as("o", &s, true);
        assert_eq!(sealed, "o_20261125_020000.dump.gz.age");
        assert!(is_encrypted(&sealed) && !is_encrypted(&dump_name("o", &s)));
        assert_eq!(parse_file_name(&sealed, "o"), Some((s, FileKind::Dump)));
        assert_eq!(manifest_of(&sealed), manifest_name("o", &s));
        assert_eq!(file_part(&format!("p/daily/o/{sealed}")), sealed);
        assert_eq!(parse_file_name("o_20261125_020000.dump.age", "o"), None);
        let tar = tar_name_as("config", &s, true);
        assert_eq!(tar, "config_20261125_020000.tar.gz.age");
        assert!(is_encrypted(&tar) && !is_encrypted(&tar_name_as("config", &s, false)));
        assert_eq!(parse_file_name(&tar, "config"), Some((s, FileKind::Dump)));
        assert_eq!(manifest_of(&tar), manifest_name("config", &s));
    }

    #[test]
    fn a_dump_name_fits_its_sets_kind() {
        use crate::config::SetKind;
        let db = |name: &str, kind| Database {
            name: name.into(),
            dbname: name.into(),
            host: String::new(),
            port: 0,
            user: String::new(),
            password_env: None,
            kind,
        };
        let (o, c) = (db("o", SetKind::Postgres), db("config", SetKind::Config));
        let s = Stamp::parse("20261125_020000").unwrap();
        let dbs = [&o, &c];
        let found = |n: &str| parse_dump_name(n, &dbs).map(|(d, _)| d.name.clone());
        assert_eq!(found(&dump_name("o", &s)).as_deref(), Some("o"));
        assert_eq!(
            found(&tar_name_as("config", &s, true)).as_deref(),
            Some("config")
        );
        assert_eq!(found(&tar_name_as("o", &s, false)), None);
        assert_eq!(found(&dump_name("config", &s)), None);
    }
}
