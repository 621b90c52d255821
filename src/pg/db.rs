//! Database-level operations on a server: existence, creation in the image
//! of another database, row counts, the atomic swap of a restore, and drop.
//!
//! A restore never writes into the live database: it fills a fresh one and
//! then swaps names in one transaction, so at every instant the live name
//! points at either the old, complete database or the new, complete one.

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
    /// an inheritance tree on its own) of the given tables in `dbname`.
    pub fn count_rows(&self, dbname: &str, tables: &[TableRows]) -> Result<Vec<TableRows>> {
        if tables.is_empty() {
            return Ok(Vec::new());
        }
        let parts: Vec<String> = tables
            .iter()
            .enumerate()
            .map(|(i, t)| {
                format!(
                    "SELECT {i}, count(*) FROM ONLY {}.{}",
                    ident(&t.schema),
                    ident(&t.name)
                )
            })
            .collect();
        let rows = self
            .tools
            .query(self.db, dbname, &(parts.join(" UNION ALL ") + ";"))?;
        let mut out = tables.to_vec();
        for r in rows {
            let (Some(i), Some(n)) = (
                r.first().and_then(|s| s.parse::<usize>().ok()),
                r.get(1).and_then(|s| s.parse::<u64>().ok()),
            ) else {
                return Err(Error::Check(format!("unexpected psql output {r:?}")));
            };
            if let Some(t) = out.get_mut(i) {
                t.rows = n;
            }
        }
        Ok(out)
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

    pub fn allow_connections(&self, name: &str) -> Result<()> {
        self.admin(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true;",
            ident(name)
        ))
        .map(drop)
    }
}

/// A database name derived from `base` that fits PostgreSQL's 63 bytes.
pub fn derived_name(base: &str, tag: &str, stamp: &str) -> String {
    let room = 63 - tag.len() - stamp.len() - 4;
    let base = &base[..base.len().min(room)];
    format!("{base}__{tag}_{stamp}")
}
