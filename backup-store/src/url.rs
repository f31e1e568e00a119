//! Catalog and storage URLs: the scheme, PostgreSQL's `schema=` parameter, and redaction of
//! secrets for messages.

/// The URL without its `schema=` query parameter (the driver refuses parameters it does not
/// know), and that parameter's value.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn take_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_owned(), None) };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("schema=") {
            Some(value) => {
                schema = Some(value.to_owned());
                false
            }
            None => true,
        })
        .collect();
    let url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
    (url, schema)
}

/// The URL without its password and secret query values, for error messages; also when it
/// does not parse.
pub(crate) fn redact(url: &str) -> String {
    let shown: String = url.chars().take(300).collect();
    let shown = match shown.split_once('?') {
        Some((base, query)) => {
            let masked: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _))
                        if ["secret", "password", "token", "key", "sas"]
                            .iter()
                            .any(|s| k.to_ascii_lowercase().contains(s)) =>
                    {
                        format!("{k}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{base}?{}", masked.join("&"))
        }
        None => shown,
    };
    let Some((scheme, rest)) = shown.split_once("://") else { return shown };
    // A password may hold '/', '?' or '#' unescaped: the user part ends at the last '@' (if
    // that '@' was in a path or a query instead, more is hidden than needed, never less).
    match rest.rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..]),
            None => shown,
        },
        None => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_parameter_is_taken_out_of_the_url() {
        assert_eq!(take_schema("postgres://u@h/db"), ("postgres://u@h/db".into(), None));
        assert_eq!(take_schema("postgres://u@h/db?schema=a_1"), ("postgres://u@h/db".into(), Some("a_1".into())));
        assert_eq!(
            take_schema("postgres://u@h/db?sslmode=disable&schema=b&connect_timeout=3"),
            ("postgres://u@h/db?sslmode=disable&connect_timeout=3".into(), Some("b".into()))
        );
    }

    #[test]
    fn passwords_and_secrets_are_hidden() {
        assert_eq!(redact("postgres://u:p%40ss@h:x/db?a=b"), "postgres://u:***@h:x/db?a=b");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("s3://bucket?region=x&secret_access_key=abc"), "s3://bucket?region=x&secret_access_key=***");
        // A password with a slash, a question mark or a hash, unescaped.
        for url in ["postgres://u:pa/ss@h/db", "postgres://u:pa?ss@h/db", "postgres://u:a/b?c#d@h:5432/db"] {
            let shown = redact(url);
            assert!(
                !shown.contains("pa/ss") && !shown.contains("pa?ss") && !shown.contains("a/b?c#d"),
                "{url} -> {shown}"
            );
            assert!(shown.starts_with("postgres://u:***@h"), "{url} -> {shown}");
        }
    }
}
