//! Secrets out of any text that may hold a URL or a connection string.

/// Hides secrets in text that may contain URLs or connection strings: the
/// `sig=` of a SAS, and account keys.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let hit = ["sig=", "AccountKey=", "SharedAccessSignature="]
            .iter()
            .filter_map(|k| rest.find(k).map(|i| (i, k.len())))
            .min();
        let Some((i, klen)) = hit else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..i + klen]);
        out.push_str("REDACTED");
        let tail = &rest[i + klen..];
        let end = tail
            .find(|c: char| c == '&' || c == ';' || c == '"' || c == '\'' || c.is_whitespace())
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_signatures_and_keys() {
        let s = redact("GET http://h/c?sv=1&sig=abc%2Fdef&se=2 failed; AccountKey=xyz==;x");
        assert_eq!(
            s,
            "GET http://h/c?sv=1&sig=REDACTED&se=2 failed; AccountKey=REDACTED;x"
        );
        assert_eq!(redact("nothing here"), "nothing here");
    }
}
