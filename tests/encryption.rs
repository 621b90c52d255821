//! Client-side encryption end to end: backups age-encrypted to the
//! configured recipients, read back by the program with the identity and by
//! stock tools (Debian's `age` CLI, gunzip, pg_restore) without it, checked
//! by content fingerprints; wrong keys, altered and cut files, bad
//! recipients, key rotation, and the offsite round trip through Azurite.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::azurite::Azurite;
use common::*;
use serde_json::Value;

fn encrypt_to(sb: &Sandbox, recipients: &[&str], extra: &str) {
    let list: Vec<String> = recipients.iter().map(|r| format!("\"{r}\"")).collect();
    let text = format!(
        "{}\n[encryption]\nrecipients = [{}]\n{extra}",
        sb.config_text(""),
        list.join(", ")
    );
    std::fs::write(sb.config_path(), text).unwrap();
}

fn with_identity(sb: &Sandbox, key: &Path, args: &[&str]) -> Run {
    let mut cmd = sb.command(args);
    cmd.env("VALERIX_BACKUP_IDENTITY_FILE", key);
    run(cmd)
}

fn sealed(sb: &Sandbox) -> Vec<PathBuf> {
    list_dir(&sb.backup_dir())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".dump.gz.age"))
        .collect()
}

fn sealed_of(sb: &Sandbox, dbname: &str) -> PathBuf {
    sealed(sb)
        .into_iter()
        .rfind(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(&format!("{dbname}_2"))
        })
        .expect("an encrypted backup of the database")
}

fn manifest_of(dump: &Path) -> Value {
    let name = dump.file_name().unwrap().to_string_lossy();
    let stem = name.strip_suffix(".dump.gz.age").unwrap();
    let text = std::fs::read(dump.with_file_name(format!("{stem}.manifest.json"))).unwrap();
    serde_json::from_slice(&text).unwrap()
}

/// `age -d -i KEY FILE | gunzip | pg_restore -d DB`: the stock tools, no
/// valerix-backup.
fn restore_with_stock_tools(sb: &Sandbox, key: &Path, file: &Path, db: &str) {
    sb.pg.psql("postgres", &format!("CREATE DATABASE {db}"));
    let pg_restore = pg_bin().join("pg_restore");
    let script = format!(
        "set -o pipefail; age -d -i '{}' '{}' | gunzip | '{}' --no-owner -h '{}' -p {} \
         -U postgres -d {db}",
        key.display(),
        file.display(),
        pg_restore.display(),
        sb.pg.dir.display(),
        sb.pg.port
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn encrypted_backups_restore_with_the_identity_and_with_stock_tools() {
    let sb = Sandbox::new();
    let (key, public) = keygen(sb.work.path(), "key.txt");
    encrypt_to(&sb, &[&public], "");
    let before = sb.pg.fingerprint("order_db");
    sb.run(&["backup"]).ok();

    // Encrypted names only, 0600, the manifest's hash over the stored bytes.
    assert!(sb.dumps().is_empty(), "no plain .dump.gz: {:?}", sb.dumps());
    let file = sealed_of(&sb, "order_db");
    assert_eq!(sealed(&sb).len(), 2);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    let m = manifest_of(&file);
    assert_eq!(m["sha256"].as_str().unwrap(), sha256_file(&file));
    assert_eq!(m["size_bytes"].as_u64().unwrap(), bytes.len() as u64);
    assert_eq!(m["encryption"]["scheme"], "age");
    assert_eq!(m["encryption"]["recipients"][0], public.as_str());

    // The stock tools read it with the key; nothing of ours involved.
    restore_with_stock_tools(&sb, &key, &file, "order_stock");
    assert_eq!(sb.pg.fingerprint("order_stock"), before);

    // `list` names the recipient; `verify` without the key checks the
    // stored bytes and says what it did not check.
    let list: Value = serde_json::from_str(&sb.run(&["list", "--json"]).ok().stdout).unwrap();
    let entry = &list.as_array().unwrap()[0];
    assert_eq!(entry["encrypted_to"][0], public.as_str());
    assert!(entry["file"].as_str().unwrap().ends_with(".dump.gz.age"));
    let v: Value = serde_json::from_str(&sb.run(&["verify", "--json"]).ok().stdout).unwrap();
    let order = &v["results"][0];
    assert_eq!(order["ok"], true);
    assert!(order["unchecked"].as_str().unwrap().contains("no identity"));
    sb.run(&["verify", "order", "--deep"])
        .fails_with(1, "VALERIX_BACKUP_IDENTITY_FILE");

    // With the identity: the deep checks and a restore, by content.
    let v = with_identity(&sb, &key, &["verify", "--json"]).ok();
    let v: Value = serde_json::from_str(&v.stdout).unwrap();
    assert!(v["results"][0].get("unchecked").is_none(), "{v}");
    with_identity(&sb, &key, &["verify", "order", "--deep"]).ok();
    sb.pg.psql("order_db", "DELETE FROM order_items");
    let r = with_identity(&sb, &key, &["restore", "latest", "order", "--yes"]).ok();
    assert_eq!(sb.pg.fingerprint("order_db"), before);
    // Decrypted as read, its members inflated on every core.
    assert!(r.stderr.contains("inflated in parallel"), "{}", r.stderr);

    // A wrong key, a changed byte, a cut: refused by name, nothing touched.
    sb.pg.psql(
        "order_db",
        "DELETE FROM order_items WHERE ctid IN (SELECT ctid FROM order_items LIMIT 10)",
    );
    let changed = sb.pg.fingerprint("order_db");
    let (other, _) = keygen(sb.work.path(), "other.txt");
    let e = with_identity(&sb, &other, &["restore", "latest", "order", "--yes"])
        .fails_with(1, "none of the keys");
    assert!(e.contains(&public) && !e.contains("AGE-SECRET-KEY"), "{e}");
    let original = bytes.clone();
    let mut altered = original.clone();
    let mid = altered.len() / 2;
    altered[mid] ^= 0x40;
    for bad in [&altered[..], &original[..original.len() - 40]] {
        std::fs::write(&file, bad).unwrap();
        with_identity(&sb, &key, &["restore", "latest", "order", "--yes"])
            .fails_with(1, "age authentication failed");
        with_identity(&sb, &key, &["verify", "order"]).fails_with(1, "age authentication failed");
        // Without the key the stored bytes' hash catches it.
        sb.run(&["verify", "order"])
            .fails_with(1, "does not match the manifest");
        assert_eq!(sb.pg.fingerprint("order_db"), changed);
    }
    std::fs::write(&file, &original).unwrap();

    // The seed's own verify-backup.sh sees no backup it can read (it globs
    // *.dump.gz): it fails, never reports an encrypted file verified.
    let out = Command::new("bash")
        .arg(repo().join("tests/fixtures/seed/verify-backup.sh"))
        .current_dir(sb.work.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    // The seed-compatible wrapper goes through the program: without the key
    // one line names what is missing, with it the restore works.
    let wrapper = repo().join("scripts/restore-databases.sh");
    let stamp = m["timestamp"].as_str().unwrap().to_string();
    let mut w = Command::new("bash");
    w.arg(&wrapper)
        .args([&stamp, "order"])
        .env("VALERIX_BACKUP_BIN", bin())
        .env("VALERIX_BACKUP_CONFIG", sb.config_path())
        .env("ORDER_DB_PASSWORD", ORDER_PW)
        .env_remove("VALERIX_BACKUP_IDENTITY_FILE")
        .current_dir(sb.work.path());
    let r = run(w);
    r.fails_with(1, "no identity to open encrypted backups");
    assert_eq!(sb.pg.fingerprint("order_db"), changed);
}

#[test]
fn key_rotation_keeps_old_backups_readable_and_bad_keys_are_config_errors() {
    let sb = Sandbox::new();
    let dir = sb.work.path();
    let (k1, p1) = keygen(dir, "k1.txt");
    let (k2, p2) = keygen(dir, "k2.txt");
    let (escrow, p3) = keygen(dir, "escrow.txt");

    // Bad recipient lists are config errors, exit 2, before any backup.
    encrypt_to(&sb, &["age1notakey"], "");
    sb.run(&["backup"]).fails_with(
        2,
        "encryption.recipients[0] 'age1notakey' is not an age public key",
    );
    let secret = std::fs::read_to_string(&k1).unwrap();
    let secret = secret
        .lines()
        .find(|l| l.starts_with("AGE-SECRET"))
        .unwrap();
    encrypt_to(&sb, &[&p1, secret], "");
    let e = sb.run(&["backup"]).fails_with(2, "is a private key");
    assert!(!e.contains(secret), "{e}");
    encrypt_to(&sb, &[], "");
    sb.run(&["backup"])
        .fails_with(2, "encryption.recipients is empty");
    assert!(
        list_dir(&sb.backup_dir())
            .iter()
            .all(|p| !p.to_string_lossy().contains(".dump"))
    );

    // Key 1, then a rotation to key 2 with an escrow key beside it.
    encrypt_to(&sb, &[&p1], "");
    sb.run(&["backup", "order"]).ok();
    let first = manifest_of(&sealed_of(&sb, "order_db"));
    let first = first["timestamp"].as_str().unwrap().to_string();
    // The identity in the config this time (relative to the config file).
    encrypt_to(&sb, &[&p2, &p3], "identity_file = \"k2.txt\"");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    sb.run(&["backup", "order"]).ok();
    let second = manifest_of(&sealed_of(&sb, "order_db"));
    let second = second["timestamp"].as_str().unwrap().to_string();
    assert_ne!(first, second);

    // `config check` proves the configured identity opens new backups, and
    // fails for one that does not.
    let c = sb.run(&["config", "check", "--json"]).ok().stdout;
    assert!(
        c.contains("opens backups made for") && c.contains(&p2),
        "{c}"
    );
    let e = with_identity(&sb, &k1, &["config", "check"]).fails_with(1, "identity file");
    assert!(!e.contains("AGE-SECRET"), "{e}");

    let list: Value =
        serde_json::from_str(&sb.run(&["list", "order", "--json"]).ok().stdout).unwrap();
    let keys = |i: usize| list[i]["encrypted_to"].clone();
    assert_eq!(keys(0), serde_json::json!([p1]));
    assert_eq!(keys(1), serde_json::json!([p2, p3]));
    let text = sb.run(&["list", "order"]).ok().stdout;
    assert!(
        text.contains("ENCRYPTED TO") && text.contains(&p1[..16]),
        "{text}"
    );

    // The configured key opens the new backup; the old one needs its own
    // key (named in the refusal); the escrow key opens the new one.
    sb.run(&["verify", &second, "order", "--deep"]).ok();
    sb.run(&["verify", &first, "order"])
        .fails_with(1, &format!("it was encrypted to {p1}"));
    with_identity(&sb, &k1, &["verify", &first, "order", "--deep"]).ok();
    with_identity(&sb, &escrow, &["verify", &second, "order", "--deep"]).ok();
    let _ = k2;
}

#[test]
fn an_encrypted_backup_goes_offsite_and_comes_back_on_an_empty_machine() {
    let sb = Sandbox::new();
    let az = Azurite::start();
    let (key, public) = keygen(sb.work.path(), "key.txt");
    let keys =
        format!("max_retries = 2\nretry_max_secs = 3\n[encryption]\nrecipients = [\"{public}\"]");
    sb.write_azure_config("enc", &keys);
    let conn = az.conn_string();
    let offsite = |args: &[&str], with_key: bool| {
        if !with_key {
            return sb.run_with_conn(args, &conn);
        }
        let mut cmd = sb.command(args);
        cmd.env("AZURE_STORAGE_CONNECTION_STRING", &conn);
        cmd.env("VALERIX_BACKUP_IDENTITY_FILE", &key);
        run(cmd)
    };
    let before = sb.pg.fingerprint("order_db");
    offsite(&["backup", "--upload"], false).ok();
    let file = sealed_of(&sb, "order_db");
    let name = file.file_name().unwrap().to_string_lossy().into_owned();

    // The blob is the encrypted file, byte for byte (the Python SDK reads
    // it), and its metadata names the recipient.
    let blobs = az.list("enc", "");
    let blob = blobs
        .iter()
        .find(|b| b["name"].as_str().unwrap().ends_with(&name))
        .unwrap_or_else(|| panic!("{name} not in {blobs:?}"));
    let blob_name = blob["name"].as_str().unwrap();
    assert_eq!(az.sha256("enc", blob_name), sha256_file(&file));
    assert_eq!(blob["metadata"]["encrypted_to"], public.as_str());
    // The audit proves the copy without the key.
    offsite(&["audit", "--deep"], false).ok();

    // The machine is gone: an empty backup directory, the key from escrow.
    std::fs::remove_dir_all(sb.backup_dir()).unwrap();
    sb.pg.psql("postgres", "DROP DATABASE order_db");
    offsite(
        &["restore", "latest", "order", "--from-azure", "--yes"],
        false,
    )
    .fails_with(1, "no identity to open encrypted backups");
    assert!(!sb.pg.databases().contains(&"order_db".to_string()));
    offsite(
        &["restore", "latest", "order", "--from-azure", "--yes"],
        true,
    )
    .ok();
    assert_eq!(sb.pg.fingerprint("order_db"), before);
    assert_eq!(
        sha256_file(&sb.backup_dir().join(&name)),
        az.sha256("enc", blob_name)
    );
}
