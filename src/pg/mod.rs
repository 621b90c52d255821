//! PostgreSQL: the client tools as child processes, the custom archive
//! format, and the database operations of a restore (create, rename, drop).

pub mod archive;
pub mod db;
pub mod offsets;
pub mod rechunk;
pub mod tools;
