//! Name rules shared by connectors and pipelines.

/// Whether `name` is a valid connector or workflow name: lowercase letters, digits and dashes,
/// starting with a letter, no leading, trailing or double dash.
pub fn is_valid(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// The message for an invalid name.
pub fn invalid(what: &str, name: &str) -> String {
    format!(
        "invalid {what} `{name}`: use lowercase letters, digits and dashes, starting with a letter, like `csv-to-mongo`"
    )
}

/// `CsvToMongo` -> `csv-to-mongo`, `HTTPSource` -> `http-source`, `Csv2Mongo` -> `csv2-mongo`.
pub fn kebab_case(ident: &str) -> String {
    let chars: Vec<char> = ident.chars().filter(|c| *c != '_').collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let starts_word = prev.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit())
                || (prev.is_some_and(char::is_uppercase) && next.is_some_and(|n| n.is_lowercase()));
            if starts_word {
                out.push('-');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kebab_case_splits_words_and_acronyms() {
        assert_eq!(kebab_case("CsvToMongo"), "csv-to-mongo");
        assert_eq!(kebab_case("HTTPSource"), "http-source");
        assert_eq!(kebab_case("Csv2Mongo"), "csv2-mongo");
        assert_eq!(kebab_case("Numbers"), "numbers");
    }

    #[test]
    fn names_are_lowercase_digits_and_dashes() {
        assert!(is_valid("csv-to-mongo"));
        assert!(is_valid("s3v2"));
        for bad in [
            "",
            "Csv",
            "csv_to",
            "-csv",
            "csv-",
            "csv--mongo",
            "2csv",
            "csv mongo",
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
    }
}
