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
    /// with the restore). One session: psql's `\gexec` runs the statement
    /// the lookup builds, outside a transaction as CREATE DATABASE must be.
    pub fn create_like(&self, name: &str, like: &str) -> Result<()> {
        let (name, like) = (literal(name), literal(like));
        self.admin(&format!(
            "SELECT format('CREATE DATABASE %I TEMPLATE template0 ENCODING %L \
             LC_COLLATE %L LC_CTYPE %L', {name}, pg_encoding_to_char(encoding), datcollate, \
             datctype) FROM pg_database WHERE datname = {like} \
             UNION ALL SELECT format('CREATE DATABASE %I TEMPLATE template0', {name}) \
             WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = {like})\n\\gexec\n"
        ))
        .map(drop)
    }

    /// Drops `name` (this run's fresh or scratch database, or the one a
    /// swap replaced), ending its client sessions first.
    ///
    /// Not `WITH (FORCE)`: FORCE also tries to terminate an autovacuum
    /// worker busy in the database, which a non-superuser may not do ("must
    /// be a member of the role whose process is being terminated"), and a
    /// freshly loaded database is just what autovacuum picks next; the
    /// benchmark's `verify --deep` of a 900 MiB database hit it. A plain
    /// DROP DATABASE asks autovacuum workers to exit and waits for them
    /// itself; only client sessions need ending, as in [`Server::swap`].
    pub fn drop_database(&self, name: &str) -> Result<()> {
        self.admin(&format!(
            "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity \
             WHERE datname = {} AND pid <> pg_backend_pid() AND backend_type = 'client backend';\n\
             DROP DATABASE IF EXISTS {};",
            literal(name),
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

    /// Proves that each of `want` in `dbname`, a database a restore has
    /// just loaded and nothing else has written, holds exactly its `rows`.
    ///
    /// Counting every table again costs a scan of the whole database (about
    /// 1 s of a 24 s restore of 900 MiB). The server keeps exact counters
    /// of what was written to each table: a table into which exactly `rows`
    /// rows were inserted, none deleted, and that holds `rows` live rows by
    /// the same counters (a TRUNCATE resets those) is proven without a scan.
    /// Any other table, and every table when the counters are off
    /// (`track_counts`) or not yet flushed by the loading sessions, is
    /// counted with `count(*)`, which then decides. A counter can thus only
    /// cost a count, never prove a wrong one.
    pub fn prove_rows(
        &self,
        dbname: &str,
        want: &[TableRows],
        sessions: usize,
    ) -> Result<RowProof> {
        let mut unproven = self.unproven_by_counters(dbname, want)?;
        if !unproven.is_empty() {
            // A loading session flushes its counters as it exits, which may
            // be a moment after pg_restore has: look once more.
            std::thread::sleep(std::time::Duration::from_millis(200));
            let again = self.unproven_by_counters(dbname, want)?;
            unproven.retain(|i| again.contains(i));
        }
        let mut tables = want.to_vec();
        if !unproven.is_empty() {
            let subset: Vec<TableRows> = unproven.iter().map(|&i| want[i].clone()).collect();
            let counted = self.count_rows(dbname, &subset, sessions)?;
            for (&i, c) in unproven.iter().zip(counted) {
                tables[i] = c;
            }
        }
        Ok(RowProof {
            tables,
            counted: unproven.len(),
        })
    }

    /// The indices of `want` that the server's insert, delete and live-row
    /// counters of `dbname` do not prove (see [`Server::prove_rows`]).
    fn unproven_by_counters(&self, dbname: &str, want: &[TableRows]) -> Result<Vec<usize>> {
        if want.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<String> = want
            .iter()
            .enumerate()
            .map(|(i, t)| format!("({i}, to_regclass({}))", qualified(t)))
            .collect();
        let sql = format!(
            "SELECT i, pg_stat_get_tuples_inserted(c), pg_stat_get_tuples_deleted(c), \
             pg_stat_get_live_tuples(c) FROM (VALUES {}) v(i, c);",
            values.join(", ")
        );
        let mut proven = vec![false; want.len()];
        for r in self.tools.query(self.db, dbname, &sql)? {
            let n = |k: usize| r.get(k).and_then(|s| s.parse::<u64>().ok());
            if let (Some(i), Some(ins), Some(del), Some(live)) = (n(0), n(1), n(2), n(3)) {
                let i = i as usize;
                if let Some(t) = want.get(i) {
                    proven[i] = counters_prove(t.rows, ins, del, live);
                }
            }
        }
        Ok((0..want.len()).filter(|&i| !proven[i]).collect())
    }

    /// Exact row counts (`count(*) FROM ONLY`, as pg_dump dumps each table of
    /// an inheritance tree on its own) of the given tables in `dbname`, in
    /// their order. With more than one session, the tables are shared out
    /// by their size on disk among up to `sessions` sessions counting at
    /// once: the largest first, each to the session with the least so far.
    fn count_rows(
        &self,
        dbname: &str,
        tables: &[TableRows],
        sessions: usize,
    ) -> Result<Vec<TableRows>> {
        let sizes = match (sessions, tables.len()) {
            (0 | 1, _) | (_, 0 | 1) => vec![0; tables.len()],
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
                format!(
                    "SELECT {i}, coalesce(pg_relation_size(to_regclass({})), 0)",
                    qualified(t)
                )
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

    /// For each of `tags`, `derived_name(base, tag, stamp)`, or with `_2`,
    /// `_3`... appended to the stamp when that name is taken: names of this
    /// run's own. Refuses a server that is too old ([`Server::survey`]).
    pub fn unused_names(&self, base: &str, tags: &[&str], stamp: &str) -> Result<Vec<String>> {
        const BATCH: usize = 8;
        let mut names: Vec<Option<String>> = vec![None; tags.len()];
        for batch in 0.. {
            // The next candidates of every tag still without a name, asked
            // about in one query.
            let mut candidates = Vec::new();
            for (k, tag) in tags.iter().enumerate().filter(|(k, _)| names[*k].is_none()) {
                for n in batch * BATCH..(batch + 1) * BATCH {
                    let stamp = match n {
                        0 => stamp.to_string(),
                        n => format!("{stamp}_{}", n + 1),
                    };
                    candidates.push((k, derived_name(base, tag, &stamp)));
                }
            }
            if candidates.is_empty() {
                break;
            }
            let all: Vec<String> = candidates.iter().map(|(_, c)| c.clone()).collect();
            let taken = self.survey(&all)?;
            for ((k, name), taken) in candidates.into_iter().zip(taken) {
                if !taken && names[k].is_none() {
                    names[k] = Some(name);
                }
            }
        }
        Ok(names.into_iter().flatten().collect())
    }

    /// Which of `names` exist, in one query that also refuses a server older
    /// than [`MIN_SERVER_VERSION`], before anything is created on it.
    pub fn survey(&self, names: &[String]) -> Result<Vec<bool>> {
        let lookups: Vec<String> = names
            .iter()
            .map(|n| {
                format!(
                    "EXISTS (SELECT 1 FROM pg_database WHERE datname = {})",
                    literal(n)
                )
            })
            .chain(std::iter::once("true".into()))
            .collect();
        let rows = self.admin(&format!(
            "SELECT current_setting('server_version_num'), current_setting('server_version'), \
             {};",
            lookups.join(", ")
        ))?;
        let row = rows.first().map(Vec::as_slice).unwrap_or_default();
        let unexpected = || Error::Unexpected(format!("unexpected server answer {rows:?}"));
        let num = row.first().and_then(|n| n.parse::<u32>().ok());
        let num = num.ok_or_else(unexpected)?;
        if num < MIN_SERVER_VERSION {
            return Err(Error::Refused(format!(
                "{}:{} runs PostgreSQL {}; restore and verify --deep need 14 or newer \
                 (docs/runbook.md has the manual restore with pg_restore)",
                self.db.host,
                self.db.port,
                row.get(1).map_or("?", String::as_str)
            )));
        }
        let found: Vec<bool> = row.iter().skip(2).map(|v| v == "t").collect();
        if found.len() != names.len() + 1 {
            return Err(unexpected());
        }
        Ok(found[..names.len()].to_vec())
    }

    pub fn allow_connections(&self, name: &str) -> Result<()> {
        self.admin(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true;",
            ident(name)
        ))
        .map(drop)
    }
}

/// `'schema.table'`, quoted for `to_regclass`.
fn qualified(t: &TableRows) -> String {
    literal(&format!("{}.{}", ident(&t.schema), ident(&t.name)))
}

/// What [`Server::prove_rows`] found.
pub struct RowProof {
    /// The tables with the rows they hold.
    pub tables: Vec<TableRows>,
    /// How many of them had to be counted with `count(*)`.
    pub counted: usize,
}

/// Whether a fresh table's counters prove that it holds exactly `want`
/// rows: `want` inserted, none deleted, `want` live.
fn counters_prove(want: u64, inserted: u64, deleted: u64, live: u64) -> bool {
    inserted == want && deleted == 0 && live == want
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

/// The oldest server a restore or deep verify works on: the swap and the
/// drops end sessions with `pg_terminate_backend(pid, timeout)` (14).
pub const MIN_SERVER_VERSION: u32 = 140000;

#[cfg(test)]
mod tests {
    use super::{counters_prove, derived_name, share_out};

    #[test]
    fn only_counters_that_add_up_exactly_prove_a_table() {
        assert!(counters_prove(1000, 1000, 0, 1000));
        assert!(counters_prove(0, 0, 0, 0));
        // A row lost, one too many, one deleted, a TRUNCATE after the load
        // (which resets the live count but not the inserts), an ANALYZE
        // estimate in place of the live count: all counted instead.
        assert!(!counters_prove(1000, 999, 0, 999));
        assert!(!counters_prove(1000, 1001, 0, 1001));
        assert!(!counters_prove(1000, 1000, 1, 999));
        assert!(!counters_prove(1000, 1000, 0, 0));
        assert!(!counters_prove(1000, 1000, 0, 1013));
    }

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
