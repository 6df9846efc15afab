//! The CSV source's tests: planning, reading, ragged rows, changed inputs.

use super::scanner::PLAN_CHUNK;
use super::*;
use crate::Positioned;
use crate::connector::{BatchRange, Source, SourceConfig};
use crate::error::ErrorKind;
use crate::error::RecordError;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// An input in memory whose bytes a test can change under a built reader.
struct MemInput {
    name: String,
    bytes: Mutex<Vec<u8>>,
    len: u64,
}

impl MemInput {
    fn new(name: &str, bytes: &[u8]) -> Self {
        Self {
            name: name.to_owned(),
            bytes: Mutex::new(bytes.to_vec()),
            len: bytes.len() as u64,
        }
    }
}

impl ByteInput for MemInput {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> u64 {
        self.len
    }

    async fn read(&self, start: u64, end: u64) -> Result<Vec<u8>, ConnectorError> {
        let bytes = self.bytes.lock().unwrap();
        let end = (end as usize).min(bytes.len());
        let start = (start as usize).min(end);
        Ok(bytes[start..end].to_vec())
    }
}

async fn mem(bytes: &[u8], options: &CsvOptions) -> CsvReader<MemInput> {
    CsvReader::open(MemInput::new("mem.csv", bytes), options)
        .await
        .unwrap()
}

/// Plans one batch at a time, resuming from the previous end as a job does, and reads
/// each batch.
async fn read_all<B: ByteInput>(
    reader: &CsvReader<B>,
    batch_size: u64,
) -> (Vec<Positioned<CsvRow>>, Vec<RecordError>) {
    let (mut rows, mut errors) = (Vec::new(), Vec::new());
    let (mut from, mut index, mut first_record) = (None, 0, 0);
    loop {
        let plan = reader.plan(from.as_ref(), batch_size, 1).await.unwrap();
        for planned in &plan.batches {
            let range = BatchRange {
                index,
                start: planned.start,
                end: planned.end,
                first_record,
                records: planned.records,
            };
            let batch = reader.read(&range).await.unwrap();
            rows.extend(batch.records);
            errors.extend(batch.errors);
            index += 1;
            first_record += planned.records;
            from = Some(planned.end);
        }
        if plan.end_of_source {
            return (rows, errors);
        }
    }
}

fn values(rows: &[Positioned<CsvRow>]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|row| row.value.values().map(str::to_owned).collect())
        .collect()
}

fn temp_path(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("batch-orchestra-csv-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn set_modified(path: &PathBuf, time: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(time)
        .unwrap();
}

async fn build_error(config: CsvFile) -> ConnectorError {
    match config.build().await {
        Ok(_) => panic!("{config:?} was built"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn a_local_file_is_not_current_once_rewritten_replaced_or_removed() {
    let path = temp_path("current.csv");
    std::fs::write(&path, "id,name\n1,a\n").unwrap();
    let config = CsvFile::new(path.to_string_lossy());

    let source = config.build().await.unwrap();
    assert!(source.is_current().await, "an untouched file is current");
    let (rows, _) = read_all(&source, 10).await;
    assert_eq!(values(&rows), vec![vec!["1", "a"]]);

    // Rewritten in place with as many bytes.
    let opened_at = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, "id,name\n2,b\n").unwrap();
    set_modified(&path, opened_at + Duration::from_secs(5));
    assert!(!source.is_current().await, "a file written in place");

    // Appended to: a new length.
    let source = config.build().await.unwrap();
    assert!(source.is_current().await);
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, "id,name\n2,b\n3,c\n").unwrap();
    set_modified(&path, modified);
    assert!(!source.is_current().await, "a file with a new length");

    // Replaced by a rename with the same length and time: only the inode tells.
    let source = config.build().await.unwrap();
    assert!(source.is_current().await);
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let replacement = temp_path("current.csv.new");
    std::fs::write(&replacement, "id,name\n4,d\n5,e\n").unwrap();
    set_modified(&replacement, modified);
    std::fs::rename(&replacement, &path).unwrap();
    assert!(!source.is_current().await, "a file replaced by a rename");

    // Removed.
    let source = config.build().await.unwrap();
    assert!(source.is_current().await);
    let (rows, _) = read_all(&source, 10).await;
    assert_eq!(values(&rows), vec![vec!["4", "d"], vec!["5", "e"]]);
    std::fs::remove_file(&path).unwrap();
    assert!(!source.is_current().await, "a removed file");
}

#[tokio::test]
async fn a_quote_inside_an_unquoted_field_reads_the_same_with_or_without_a_final_newline() {
    for bytes in [&b"a,b\n1,2\n3,ab\"c"[..], b"a,b\n1,2\n3,ab\"c\n"] {
        let reader = mem(bytes, &CsvOptions::default()).await;
        let (rows, errors) = read_all(&reader, 10).await;
        let text = String::from_utf8_lossy(bytes);
        assert!(errors.is_empty(), "{text:?}: {errors:?}");
        assert_eq!(
            values(&rows),
            vec![vec!["1", "2"], vec!["3", "ab\"c"]],
            "{text:?}"
        );
    }
    // Quoted fields at the end of the file: open ones are errors, closed ones are not.
    let cases: [(&[u8], Option<&str>); 5] = [
        (b"a,b\n1,2\n3,\"never closed", None),
        (b"a,b\n1,2\n3,\"x\"\"", None),
        (b"a,b\n1,2\n3,\"x\"\"y\"", Some("x\"y")),
        (b"a,b\n1,2\n3,\"ab\"c", Some("abc")),
        (b"a,b\n1,2\n\"3\",\"\"", Some("")),
    ];
    for (bytes, last) in cases {
        let reader = mem(bytes, &CsvOptions::default()).await;
        let (rows, errors) = read_all(&reader, 10).await;
        let text = String::from_utf8_lossy(bytes);
        match last {
            None => {
                assert_eq!(rows.len(), 1, "{text:?}");
                assert_eq!(errors.len(), 1, "{text:?}");
                assert_eq!(
                    errors[0].message,
                    "a quoted field is never closed: it runs to the end of the file"
                );
                assert_eq!(errors[0].position.line, Some(3));
            }
            Some(last) => {
                assert!(errors.is_empty(), "{text:?}: {errors:?}");
                assert_eq!(rows[1].value.values().nth(1), Some(last), "{text:?}");
            }
        }
    }
}

#[tokio::test]
async fn line_breaks_and_quotes_are_refused_as_delimiters() {
    let path = temp_path("two-rows.csv");
    std::fs::write(&path, "id,name\n1,a\n2,b\n").unwrap();
    let name = path.to_string_lossy().into_owned();
    for (delimiter, shown) in [('\n', r"'\n'"), ('\r', r"'\r'"), ('"', "'\"'")] {
        let err = build_error(CsvFile::new(&name).delimiter(delimiter)).await;
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert_eq!(
            err.message(),
            format!(
                "CSV `{name}`: the delimiter cannot be a line break or a quote (got {shown}); use ',' ';' '\\t' or '|'"
            )
        );
        // The reader refuses it too, whatever built its input.
        let options = CsvOptions {
            delimiter,
            ..CsvOptions::default()
        };
        match CsvReader::open(MemInput::new("mem.csv", b"id\n1\n"), &options).await {
            Ok(_) => panic!("{delimiter:?} accepted"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Config),
        }
    }
    let err = build_error(CsvFile::new(&name).delimiter('→')).await;
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.message().contains(&name)
            && err
                .message()
                .contains("the delimiter `→` is not an ASCII character"),
        "{err}"
    );
    // Checked before the file is opened.
    let err = build_error(CsvFile::new("/nonexistent/people.csv").delimiter('\n')).await;
    assert!(err.message().contains("line break"), "{err}");
    let source = CsvFile::new(&name).delimiter('|').build().await.unwrap();
    let (rows, errors) = read_all(&source, 10).await;
    assert_eq!((rows.len(), errors.len()), (2, 0));
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn lines_are_counted_for_lf_crlf_and_cr_line_ends() {
    for eol in ["\n", "\r\n", "\r"] {
        // A blank line, and a quoted field holding a line break.
        let text = format!("id,name{eol}1,a{eol}{eol}2,\"b{eol}c\"{eol}3,d{eol}4,e");
        let bytes: Vec<u64> = ["1,a", "2,\"", "3,d", "4,e"]
            .iter()
            .map(|r| text.find(r).unwrap() as u64)
            .collect();
        for batch_size in [1, 2, 3, 10] {
            let reader = mem(text.as_bytes(), &CsvOptions::default()).await;
            let (rows, errors) = read_all(&reader, batch_size).await;
            assert!(errors.is_empty(), "{eol:?}: {errors:?}");
            let positions: Vec<_> = rows
                .iter()
                .map(|r| (r.position.record, r.position.line, r.position.byte))
                .collect();
            assert_eq!(
                positions,
                vec![
                    (0, Some(2), Some(bytes[0])),
                    (1, Some(4), Some(bytes[1])),
                    (2, Some(6), Some(bytes[2])),
                    (3, Some(7), Some(bytes[3])),
                ],
                "{eol:?}, batches of {batch_size}"
            );
            assert_eq!(rows[1].value.get("name"), Some(format!("b{eol}c").as_str()));
            let plan = reader.plan(None, batch_size, usize::MAX).await.unwrap();
            let last = plan.batches.last().unwrap();
            assert_eq!(last.end.byte, text.len() as u64);
            assert_eq!(
                last.end.line, 7,
                "{eol:?}: no line end after the last record"
            );
        }
    }
}

#[tokio::test]
async fn a_crlf_split_between_plan_chunks_counts_one_line() {
    // Rows of 16 bytes after a 3-byte header: the `\r` of row 65535 is the last byte of
    // the first planning chunk and its `\n` the first byte of the second; a batch of 65536
    // records ends between them.
    let rows = 2 * (PLAN_CHUNK / 16) + 3;
    let mut text = String::from("a\r\n");
    for k in 0..rows {
        text.push_str(&format!("{k:014}\r\n"));
    }
    let reader = mem(text.as_bytes(), &CsvOptions::default()).await;
    let plan = reader.plan(None, PLAN_CHUNK / 16, 1).await.unwrap();
    assert_eq!(plan.batches[0].end.byte, PLAN_CHUNK + 2);
    assert_eq!(&text.as_bytes()[PLAN_CHUNK as usize + 1..][..2], b"\r\n");
    let (read, errors) = read_all(&reader, PLAN_CHUNK / 16).await;
    assert!(errors.is_empty());
    assert_eq!(read.len() as u64, rows);
    for (k, row) in read.iter().enumerate() {
        let k = k as u64;
        assert_eq!(
            (row.position.line, row.position.byte),
            (Some(k + 2), Some(3 + 16 * k)),
            "row {k}"
        );
    }
}

fn row(header: Option<&[&str]>, values: &[&str]) -> CsvRow {
    CsvRow {
        header: header.map(|h| Arc::new(csv::StringRecord::from(h.to_vec()))),
        values: csv::StringRecord::from(values.to_vec()),
    }
}

#[test]
fn deserialize_errors_name_the_column_and_never_the_value() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Person {
        id: u32,
        name: String,
        age: u32,
    }
    let header: &[&str] = &["id", "name", "age"];
    let err = row(Some(header), &["1", "ann", "abc"])
        .deserialize::<Person>()
        .unwrap_err();
    assert_eq!(
        err.0,
        "column `age` (field 3): invalid digit found in string (expected an integer)"
    );

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Measure {
        id: u32,
        ok: bool,
        weight: f64,
        initial: char,
    }
    let header: &[&str] = &["id", "ok", "weight", "initial"];
    let cases = [
        (
            ["1", "yes-secret", "1.5", "a"],
            "column `ok` (field 2): provided string was not `true` or `false`",
        ),
        (
            ["1", "true", "heavy-secret", "a"],
            "column `weight` (field 3): invalid float literal (expected a number)",
        ),
        (
            ["1", "true", "1.5", "secret"],
            "column `initial` (field 4): expected single character but got 6 characters",
        ),
    ];
    for (values, message) in cases {
        let err = row(Some(header), &values)
            .deserialize::<Measure>()
            .unwrap_err();
        assert_eq!(err.0, message);
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Status {
        Active,
        Closed,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Account {
        id: u32,
        status: Status,
    }
    let _ = (Status::Active, Status::Closed);
    let err = row(Some(&["id", "status"]), &["1", "secret-status"])
        .deserialize::<Account>()
        .unwrap_err();
    assert!(!err.0.contains("secret"), "{}", err.0);
    assert!(err.0.contains("unknown variant"), "{}", err.0);

    // Without a header, by position, from 1.
    let err = row(None, &["1", "x-secret"])
        .deserialize::<(u32, u32)>()
        .unwrap_err();
    assert_eq!(
        err.0,
        "field 2: invalid digit found in string (expected an integer)"
    );
    let err = row(None, &["1"]).deserialize::<(u32, u32)>().unwrap_err();
    assert_eq!(err.0, "invalid length 1, expected a tuple of size 2");
    let err = row(None, &["1", "ann"])
        .deserialize::<Person>()
        .unwrap_err();
    assert_eq!(
        err.0,
        "invalid length 2, expected struct Person with 3 elements"
    );
}

#[test]
fn values_quoted_by_serde_are_removed_from_messages() {
    let cases = [
        (
            r#"invalid type: string "abc", expected u32"#,
            "invalid type: a string, expected u32",
        ),
        (
            r#"invalid value: string "a \"quoted\" \\ one", expected a date"#,
            "invalid value: a string, expected a date",
        ),
        (
            "invalid type: integer `42`, expected a string",
            "invalid type: an integer, expected a string",
        ),
        (
            "invalid type: floating point `1.5`, expected u8",
            "invalid type: a floating point number, expected u8",
        ),
        (
            "invalid type: boolean `true`, expected u8",
            "invalid type: a boolean, expected u8",
        ),
        (
            "invalid type: character ```, expected u8",
            "invalid type: a character, expected u8",
        ),
        (
            "invalid type: character `x`, expected u8",
            "invalid type: a character, expected u8",
        ),
        (
            "unknown variant `se`cret`, expected one of `active`, `closed`",
            "unknown variant, expected one of `active`, `closed`",
        ),
        (
            "unknown variant `secret`, there are no variants",
            "unknown variant, there are no variants",
        ),
        (
            "expected single character but got 3 characters in 'a'b'",
            "expected single character but got 3 characters",
        ),
        ("missing field `age`", "missing field `age`"),
    ];
    for (message, redacted) in cases {
        assert_eq!(crate::error::redact_values(message), redacted, "{message}");
    }
}

#[tokio::test]
async fn a_header_that_is_not_utf8_names_its_field_from_1() {
    let input = MemInput::new("mem.csv", b"id,n\xC3\x28me\n1,a\n");
    let err = match CsvReader::open(input, &CsvOptions::default()).await {
        Ok(_) => panic!("a header that is not UTF-8 was accepted"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(
        err.message(),
        "CSV `mem.csv`: the header is not valid UTF-8 (field 2); save the file as UTF-8"
    );
}

#[tokio::test]
async fn a_range_that_changed_after_planning_is_a_batch_error() {
    let bytes = b"id,v\n1,a\n2,b\n";
    let reader = CsvReader::open(MemInput::new("x.csv", bytes), &CsvOptions::default())
        .await
        .unwrap();
    let plan = reader.plan(None, 10, 1).await.unwrap();
    let planned = &plan.batches[0];
    let range = BatchRange {
        index: 0,
        start: planned.start,
        end: planned.end,
        first_record: 0,
        records: planned.records,
    };
    assert_eq!(reader.read(&range).await.unwrap().records.len(), 2);
    // The same length, one record fewer.
    *reader.input.bytes.lock().unwrap() = b"id,v\n1,a,2,b\n".to_vec();
    let err = reader.read(&range).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Batch);
    assert_eq!(
        err.message(),
        "CSV `x.csv`: bytes 5..13 now hold 1 record where the plan counted 2: the file changed after planning"
    );

    // A shorter file, built again: the range is past its end.
    let shorter = CsvReader::open(
        MemInput::new("x.csv", b"id,v\n1,a\n"),
        &CsvOptions::default(),
    )
    .await
    .unwrap();
    let err = shorter.read(&range).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Batch);
    assert_eq!(
        err.message(),
        "CSV `x.csv`: bytes 5..13 are past the end of the file (9 bytes): the file changed after planning"
    );
}

#[test]
fn offsets_display_as_byte_and_line() {
    let offset = CsvOffset { byte: 53, line: 2 };
    assert_eq!(offset.to_string(), "byte 53 (line 2)");
}
