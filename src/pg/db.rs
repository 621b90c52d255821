//! Database-level operations on a server: existence, creation in the image
//! of another database, row counts, the atomic swap of a restore, and drop.
//!
//! A restore never writes into the live database: it fills a fresh one and
//! then swaps names in one transaction, so at every instant the live name
//! points at either the old, complete database or the new, complete one.

use sha2::{Digest, Sha256};

use crate::config::Database;
use crate::error::{Error, Result};
use crate::pg::archive::TableRows;
use crate::pg::tools::{PgTools, ident, literal};

/// One server, reached through one configured database's credentials.
pub struct Server<'a> {
    pub tools: &'a PgTools,
    pub db: &'a Database,
}

impl<'a> Server<'a> {
    pub fn new(tools: &'a PgTools, db: &'a Database) -> Self {
        Server { tools, db }
    }

    fn admin(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        self.tools.admin(self.db, sql)
    }

    pub fn exists(&self, name: &str) -> Result<bool> {
        let rows = self.admin(&format!(
            "SELECT 1 FROM pg_database WHERE datname = {};",
            literal(name)
        ))?;
        Ok(!rows.is_empty())
    }

    /// Creates `name` from template0 with the encoding and locale of `like`
    /// when that database exists (template1 may hold objects that would clash
    /// with the restore).
    pub fn create_like(&self, name: &str, like: &str) -> Result<()> {
        let rows = self.admin(&format!(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype \
             FROM pg_database WHERE datname = {};",
            literal(like)
        ))?;
        let mut sql = format!("CREATE DATABASE {} TEMPLATE template0", ident(name));
        if let Some(r) = rows.first().filter(|r| r.len() == 3) {
            sql += &format!(
                " ENCODING {} LC_COLLATE {} LC_CTYPE {}",
                literal(&r[0]),
                literal(&r[1]),
                literal(&r[2])
            );
        }
        self.admin(&(sql + ";")).map(drop)
    }

    pub fn drop_database(&self, name: &str) -> Result<()> {
        self.admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE);",
            ident(name)
        ))
        .map(drop)
    }

    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.admin(&format!(
            "ALTER DATABASE {} RENAME TO {};",
            ident(from),
            ident(to)
        ))
        .map(drop)
    }

    /// Exact row counts (`count(*) FROM ONLY`, as pg_dump dumps each table of
    /// an inheritance tree on its own) of the given tables in `dbname`, in
    /// their order. With more than one session, the tables are shared out
    /// by their size on disk among up to `sessions` sessions counting at
    /// once: the largest first, each to the session with the least so far.
    pub fn count_rows(
        &self,
        dbname: &str,
        tables: &[TableRows],
        sessions: usize,
    ) -> Result<Vec<TableRows>> {
        let sizes = match sessions {
            0 | 1 => vec![0; tables.len()],
            _ => self.table_sizes(dbname, tables)?,
        };
        let shares = share_out(&sizes, sessions);
        let counted: Vec<Result<Vec<(usize, u64)>>> = std::thread::scope(|s| {
            let handles: Vec<_> = shares
                .iter()
                .map(|share| s.spawn(|| self.count_share(dbname, tables, share)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a counting thread panicked"))
                .collect()
        });
        let mut out = tables.to_vec();
        for (i, n) in counted.into_iter().collect::<Result<Vec<_>>>()?.concat() {
            if let Some(t) = out.get_mut(i) {
                t.rows = n;
            }
        }
        Ok(out)
    }

    /// The heap size in bytes of each of `tables` (0 for one that is not
    /// there: its count then fails with the server's own words).
    fn table_sizes(&self, dbname: &str, tables: &[TableRows]) -> Result<Vec<u64>> {
        let parts: Vec<String> = tables
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let name = literal(&format!("{}.{}", ident(&t.schema), ident(&t.name)));
                format!("SELECT {i}, coalesce(pg_relation_size(to_regclass({name})), 0)")
            })
            .collect();
        let mut sizes = vec![0; tables.len()];
        for (i, n) in self.numbers(dbname, &parts)? {
            if let Some(s) = sizes.get_mut(i) {
                *s = n;
            }
        }
        Ok(sizes)
    }

    /// `(index, rows)` of the tables at `share` (indices into `tables`), in
    /// one query.
    fn count_share(
        &self,
        dbname: &str,
        tables: &[TableRows],
        share: &[usize],
    ) -> Result<Vec<(usize, u64)>> {
        let parts: Vec<String> = share
            .iter()
            .map(|&i| {
                let t = &tables[i];
                format!(
                    "SELECT {i}, count(*) FROM ONLY {}.{}",
                    ident(&t.schema),
                    ident(&t.name)
                )
            })
            .collect();
        self.numbers(dbname, &parts)
    }

    /// Runs `selects` (each giving an index and a number) as one query.
    fn numbers(&self, dbname: &str, selects: &[String]) -> Result<Vec<(usize, u64)>> {
        if selects.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .tools
            .query(self.db, dbname, &(selects.join(" UNION ALL ") + ";"))?;
        rows.iter()
            .map(|r| {
                match (
                    r.first().and_then(|s| s.parse::<usize>().ok()),
                    r.get(1).and_then(|s| s.parse::<u64>().ok()),
                ) {
                    (Some(i), Some(n)) => Ok((i, n)),
                    _ => Err(Error::Unexpected(format!("unexpected psql output {r:?}"))),
                }
            })
            .collect()
    }

    /// Puts `fresh` in the place of `live`, keeping the old database as
    /// `old`: new connections to `live` are refused, its client sessions
    /// ended, then both renames commit together. On error nothing is renamed
    /// and `live` accepts connections again.
    ///
    /// Only client backends are terminated: a non-superuser may not signal
    /// an autovacuum worker ("must be a superuser to terminate superuser
    /// process"), and need not, as RENAME itself asks autovacuum workers in
    /// the database to exit and waits for them.
    pub fn swap(&self, live: &str, fresh: &str, old: &str) -> Result<()> {
        let (l, f, o) = (ident(live), ident(fresh), ident(old));
        let sql = format!(
            "ALTER DATABASE {l} WITH ALLOW_CONNECTIONS false;\n\
             SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity \
             WHERE datname = {} AND pid <> pg_backend_pid() AND backend_type = 'client backend';\n\
             BEGIN;\n\
             ALTER DATABASE {l} RENAME TO {o};\n\
             ALTER DATABASE {f} RENAME TO {l};\n\
             COMMIT;\n",
            literal(live)
        );
        let result = self.admin(&sql);
        if result.is_err() && self.exists(live).unwrap_or(false) {
            // Best effort: the error above is the one worth reporting.
            let _ = self.allow_connections(live);
        }
        result.map(drop)
    }

    /// Whether `name` accepts connections; `None` when it does not exist.
    pub fn accepts_connections(&self, name: &str) -> Result<Option<bool>> {
        let rows = self.admin(&format!(
            "SELECT datallowconn FROM pg_database WHERE datname = {};",
            literal(name)
        ))?;
        Ok(rows.first().and_then(|r| r.first()).map(|v| v == "t"))
    }

    /// `derived_name(base, tag, stamp)`, or with `_2`, `_3`... appended to
    /// the stamp when that name is taken: a name of this run's own.
    pub fn unused_name(&self, base: &str, tag: &str, stamp: &str) -> Result<String> {
        let mut name = derived_name(base, tag, stamp);
        for n in 2.. {
            if !self.exists(&name)? {
                break;
            }
            name = derived_name(base, tag, &format!("{stamp}_{n}"));
        }
        Ok(name)
    }

    /// Refuses a server older than [`MIN_SERVER_VERSION`] before anything
    /// is created on it.
    pub fn check_version(&self) -> Result<()> {
        let rows = self.admin(
            "SELECT current_setting('server_version_num'), current_setting('server_version');",
        )?;
        let (num, version) = match rows.first().map(Vec::as_slice) {
            Some([num, version]) => (num.parse::<u32>().ok(), version.clone()),
            _ => (None, String::new()),
        };
        let num =
            num.ok_or_else(|| Error::Unexpected(format!("unexpected server version {rows:?}")))?;
        if num < MIN_SERVER_VERSION {
            return Err(Error::Refused(format!(
                "{}:{} runs PostgreSQL {version}; restore and verify --deep need 14 or newer \
                 (docs/runbook.md has the manual restore with pg_restore)",
                self.db.host, self.db.port
            )));
        }
        Ok(())
    }

    pub fn allow_connections(&self, name: &str) -> Result<()> {
        self.admin(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true;",
            ident(name)
        ))
        .map(drop)
    }
}

/// Indices of `sizes` in at most `n` non-empty shares of about equal total
/// size (greedy, largest first: within 4/3 of the best split).
fn share_out(sizes: &[u64], n: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
    let mut shares: Vec<(u64, Vec<usize>)> = vec![(0, Vec::new()); n.clamp(1, sizes.len().max(1))];
    for i in order {
        let least = shares
            .iter_mut()
            .min_by_key(|(size, _)| *size)
            .expect("at least one share");
        least.0 += sizes[i];
        least.1.push(i);
    }
    shares
        .into_iter()
        .map(|(_, share)| share)
        .filter(|share| !share.is_empty())
        .collect()
}

/// A database name derived from `base` that fits PostgreSQL's 63 bytes.
/// A base too long to fit is cut and given 8 hex digits of its SHA-256, so
/// two long names that share a beginning never derive the same name.
pub fn derived_name(base: &str, tag: &str, stamp: &str) -> String {
    let room = 63 - tag.len() - stamp.len() - 3;
    if base.len() <= room {
        return format!("{base}__{tag}_{stamp}");
    }
    let hash = hex::encode(&Sha256::digest(base.as_bytes())[..4]);
    let mut cut = room - hash.len() - 1;
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{hash}__{tag}_{stamp}", &base[..cut])
}

/// The oldest server a restore or deep verify works on: the swap ends
/// sessions with `pg_terminate_backend(pid, timeout)` (14) and drops
/// scratch databases `WITH (FORCE)` (13).
pub const MIN_SERVER_VERSION: u32 = 140000;

#[cfg(test)]
mod tests {
    use super::{derived_name, share_out};

    #[test]
    fn tables_are_shared_out_by_size_and_every_one_is_counted_once() {
        let sizes = [10, 900, 0, 500, 400, 5];
        let shares = share_out(&sizes, 2);
        let mut sums: Vec<u64> = shares
            .iter()
            .map(|s| s.iter().map(|&i| sizes[i]).sum())
            .collect();
        sums.sort();
        assert_eq!(sums, [905, 910]);
        let mut all: Vec<usize> = shares.concat();
        all.sort();
        assert_eq!(all, [0, 1, 2, 3, 4, 5]);
        // Never more sessions than tables, never an empty one, never none.
        assert_eq!(share_out(&sizes[..1], 4), [[0]]);
        assert!(share_out(&[], 3).is_empty());
        assert_eq!(share_out(&sizes, 0).len(), 1);
    }

    #[test]
    fn derived_names_fit_and_keep_short_bases_readable() {
        assert_eq!(
            derived_name("order_db", "old", "20261201_081530"),
            "order_db__old_20261201_081530"
        );
    }

    #[test]
    fn long_bases_that_share_a_beginning_never_collide() {
        let a = format!("{}_east", "x".repeat(55));
        let b = format!("{}_west", "x".repeat(55));
        let (da, db) = (
            derived_name(&a, "restore", "20261201_081530_2"),
            derived_name(&b, "restore", "20261201_081530_2"),
        );
        assert_ne!(da, db);
        for d in [&da, &db] {
            assert!(d.len() <= 63, "{d} is {} bytes", d.len());
            assert!(d.ends_with("__restore_20261201_081530_2"), "{d}");
        }
        // Multi-byte characters are cut on a boundary, never inside one.
        let c = "é".repeat(40);
        assert!(derived_name(&c, "old", "20261201_081530").len() <= 63);
    }
}
