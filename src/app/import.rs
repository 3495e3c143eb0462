//! `gazette subscribers import FILE.csv`: every line of the file accounted for.
//!
//! The file is read line by line, never record by record: a CSV reader that lets a quoted
//! field run across lines swallows the rest of the file after one stray quote. Here a
//! field may not run past its line or past [`MAX_FIELD`] characters; such a line is
//! invalid (naming the line), and reading goes on at the next one. Each line ends up in
//! exactly one bucket of [`ImportTotals`], so the totals add up to the file's line count.
//!
//! Each line is checked for UTF-8 as it is read: a UTF-16 or other non-UTF-8 file is
//! refused whole, with its encoding named and the `iconv` command that converts it. The
//! header row picks the delimiter (comma, semicolon or tab: whichever gives an `email`
//! column). Rows are then applied in batches inside one store transaction and reported
//! as they are decided, so memory stays bounded however long the file is.

use crate::domain::{HeaderText, SubscriberEmail};
use crate::store::{
    Consent, Dialect, ImportAction, ImportBatch, ImportRow, Store, StoreError, SubscriberStatus,
};
use chrono::{DateTime, Utc};
use std::borrow::Cow;
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The longest line read whole, in bytes; a longer one is invalid (and skipped to its end).
pub const MAX_LINE: usize = 8 * 1024;
/// The longest field, in characters (an address is at most 254, a name far less).
pub const MAX_FIELD: usize = 1024;
/// Rows applied to the store at a time.
const BATCH: usize = 10_000;

/// Why a file could not be imported at all. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}; nothing was imported")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is {encoding} (it starts with a byte-order mark), not UTF-8; convert it \
         with: iconv -f {iconv} -t utf-8 {path} > {path}.utf8.csv"
    )]
    Utf16 {
        path: PathBuf,
        encoding: &'static str,
        iconv: &'static str,
    },
    #[error(
        "{path} is not UTF-8: line {line} has a byte that UTF-8 does not allow (0x{byte:02X}); \
         it looks like {encoding}, and nothing was imported. Convert it with: iconv -f {iconv} \
         -t utf-8 {path} > {path}.utf8.csv"
    )]
    NotUtf8 {
        path: PathBuf,
        line: u64,
        byte: u8,
        encoding: &'static str,
        iconv: &'static str,
    },
    #[error("{path} has no header row (it is empty or blank)")]
    NoHeader { path: PathBuf },
    #[error(
        "{path} line {line}: the header row has no `email` column (read as comma-separated: \
         {found}; no semicolon- or tab-separated `email` column either)"
    )]
    NoEmailColumn {
        path: PathBuf,
        line: u64,
        found: String,
    },
    #[error("{path} line {line}: the header row cannot be read: {reason}")]
    BadHeader {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("importing {path}: {source}")]
    Store { path: PathBuf, source: StoreError },
}

/// The character between fields, as seen in the header row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimiter {
    Comma,
    Semicolon,
    Tab,
}

impl Delimiter {
    fn byte(self) -> u8 {
        match self {
            Self::Comma => b',',
            Self::Semicolon => b';',
            Self::Tab => b'\t',
        }
    }
}

impl fmt::Display for Delimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Comma => "comma-separated",
            Self::Semicolon => "semicolon-separated",
            Self::Tab => "tab-separated",
        })
    }
}

/// What became of one line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineOutcome {
    /// The header row.
    Header,
    /// Nothing but spaces and delimiters.
    Blank,
    Added(SubscriberEmail),
    /// Known already; the name changed.
    Updated {
        email: SubscriberEmail,
        old_name: Option<HeaderText>,
        new_name: HeaderText,
    },
    /// Known already, nothing to change.
    Unchanged(SubscriberEmail),
    /// On the suppression list; left as it was.
    Suppressed(SubscriberEmail, SubscriberStatus),
    /// The same mailbox (in any spelling) came first on `first_line`.
    Duplicate {
        email: SubscriberEmail,
        first_line: u64,
    },
    /// Not imported, and why.
    Invalid(String),
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineReport {
    /// 1-based, as an editor shows it.
    pub line: u64,
    pub outcome: LineOutcome,
}

impl LineReport {
    /// Whether an operator should read this line (the routine ones are only counted).
    pub fn is_notable(&self) -> bool {
        !matches!(
            self.outcome,
            LineOutcome::Header
                | LineOutcome::Blank
                | LineOutcome::Added(_)
                | LineOutcome::Unchanged(_)
        )
    }
}

impl fmt::Display for LineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = self.line;
        match &self.outcome {
            LineOutcome::Header => write!(f, "line {line}: header"),
            LineOutcome::Blank => write!(f, "line {line}: blank"),
            LineOutcome::Added(e) => write!(f, "line {line}: {e}: added"),
            LineOutcome::Updated {
                email,
                old_name,
                new_name,
            } => match old_name {
                Some(old) => write!(
                    f,
                    "line {line}: {email}: name updated from {:?} to {:?}",
                    old.as_str(),
                    new_name.as_str()
                ),
                None => write!(
                    f,
                    "line {line}: {email}: name updated from none to {:?}",
                    new_name.as_str()
                ),
            },
            LineOutcome::Unchanged(e) => write!(f, "line {line}: {e}: unchanged"),
            LineOutcome::Suppressed(e, status) => write!(
                f,
                "line {line}: {e}: skipped, {status} (suppressed; not re-subscribed)"
            ),
            LineOutcome::Duplicate { email, first_line } => write!(
                f,
                "line {line}: {email}: duplicate of line {first_line}, ignored"
            ),
            LineOutcome::Invalid(reason) => write!(f, "line {line}: invalid: {reason}"),
        }
    }
}

/// How many lines went where. Every line of the file is in exactly one count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportTotals {
    pub header: u64,
    pub blank: u64,
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub suppressed: u64,
    pub duplicate: u64,
    pub invalid: u64,
}

impl ImportTotals {
    /// The lines accounted for: equals [`ImportReport::lines`].
    pub fn sum(&self) -> u64 {
        self.header
            + self.blank
            + self.added
            + self.updated
            + self.unchanged
            + self.suppressed
            + self.duplicate
            + self.invalid
    }

    fn count(&mut self, outcome: &LineOutcome) {
        let bucket = match outcome {
            LineOutcome::Header => &mut self.header,
            LineOutcome::Blank => &mut self.blank,
            LineOutcome::Added(_) => &mut self.added,
            LineOutcome::Updated { .. } => &mut self.updated,
            LineOutcome::Unchanged(_) => &mut self.unchanged,
            LineOutcome::Suppressed(..) => &mut self.suppressed,
            LineOutcome::Duplicate { .. } => &mut self.duplicate,
            LineOutcome::Invalid(_) => &mut self.invalid,
        };
        *bucket += 1;
    }
}

/// What an import did, in total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Lines in the file (a last line without a newline counts).
    pub lines: u64,
    pub delimiter: Delimiter,
    pub totals: ImportTotals,
}

impl ImportReport {
    /// The closing line of the printed report.
    pub fn summary(&self) -> String {
        let t = &self.totals;
        format!(
            "{} added, {} updated, {} unchanged, {} skipped (suppressed), {} invalid, \
             {} duplicate, {} blank, {} header: {} of {} lines",
            t.added,
            t.updated,
            t.unchanged,
            t.suppressed,
            t.invalid,
            t.duplicate,
            t.blank,
            t.header,
            t.sum(),
            self.lines
        )
    }
}

/// Imports `path`, calling `on_line` for every line in file order as it is decided.
/// Nothing is written to the store unless the whole file was read.
pub async fn import_file(
    store: &Store,
    path: &Path,
    now: DateTime<Utc>,
    mut on_line: impl FnMut(&LineReport),
) -> Result<ImportReport, ImportError> {
    // Every line is checked for UTF-8 as it is read: a line that is not refuses the
    // whole file (the transaction is dropped), whichever batch it is in.
    let mut reader = Lines::open(path)?;
    let mut totals = ImportTotals::default();
    let mut emit = |report: LineReport, totals: &mut ImportTotals| {
        totals.count(&report.outcome);
        on_line(&report);
    };

    // Blank lines before the header, then the header, which picks the delimiter.
    let (header_line, columns) = loop {
        let Some(line) = reader.next_line()? else {
            return Err(ImportError::NoHeader {
                path: path.to_owned(),
            });
        };
        let text = match &line.text {
            Ok(text) if !text.trim().trim_start_matches('\u{feff}').is_empty() => {
                text.trim_start_matches('\u{feff}')
            }
            Ok(_) => {
                emit(
                    LineReport {
                        line: line.number,
                        outcome: LineOutcome::Blank,
                    },
                    &mut totals,
                );
                continue;
            }
            Err(reason) => {
                return Err(ImportError::BadHeader {
                    path: path.to_owned(),
                    line: line.number,
                    reason: reason.clone(),
                });
            }
        };
        break (line.number, Columns::from_header(path, line.number, text)?);
    };
    emit(
        LineReport {
            line: header_line,
            outcome: LineOutcome::Header,
        },
        &mut totals,
    );

    let consent = Consent {
        at: Some(now),
        source: Some(format!(
            "import:{}",
            path.file_name().unwrap_or_default().to_string_lossy()
        )),
        ip: None,
    };
    let store_err = |source| ImportError::Store {
        path: path.to_owned(),
        source,
    };
    let mut session = store.begin_import(&consent, now).await.map_err(store_err)?;
    // The file is read and parsed, and each batch made ready for the store, on a thread
    // of its own while the store applies the batch before. The channel holds one batch,
    // so memory stays bounded.
    let delimiter = columns.delimiter;
    let dialect = store.dialect();
    let (batches, mut received) = tokio::sync::mpsc::channel(1);
    let parser = std::thread::spawn(move || read_batches(reader, &columns, dialect, &batches));
    // A batch's lines are reported while the store applies the next batch: the store
    // has its own thread, which would otherwise wait for the report.
    let mut applied: Option<Applied> = None;
    let mut report = |applied: Option<Applied>| {
        if let Some(applied) = applied {
            report_batch(applied, &mut |r| emit(r, &mut totals));
        }
    };
    while let Some(batch) = received.recv().await {
        let (batch, decided) = match batch {
            Ok(batch) => batch,
            Err(e) => {
                report(applied.take());
                return Err(e);
            }
        };
        let before = applied.take();
        let (done, ()) = tokio::join!(session.apply(batch), async { report(before) });
        applied = Some((done.map_err(store_err)?, decided));
    }
    // The channel also closes if the parser panicked: that is not the end of the file.
    let lines = match parser.join() {
        Ok(lines) => lines,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    report(applied.take());
    session.commit().await.map_err(store_err)?;
    Ok(ImportReport {
        lines,
        delimiter,
        totals,
    })
}

/// A batch: its rows, ready for the store, and the other lines, decided already; both
/// in line order.
type Batch = (ImportBatch, Vec<LineReport>);

/// Reads the data lines into batches of [`BATCH`] rows and sends them on; stops at the
/// end of the file, at a read error (sent on) or when nobody receives any more. Returns
/// how many lines the file has (the header and the lines before it included).
fn read_batches<R: BufRead>(
    mut reader: Lines<R>,
    columns: &Columns,
    dialect: Dialect,
    batches: &tokio::sync::mpsc::Sender<Result<Batch, ImportError>>,
) -> u64 {
    let mut rows = Vec::with_capacity(BATCH);
    let mut decided = Vec::new();
    loop {
        match reader.next_line() {
            Err(e) => {
                let _ = batches.blocking_send(Err(e));
                return reader.number;
            }
            Ok(None) => break,
            Ok(Some(line)) => match columns.read(line) {
                Ok(row) => {
                    rows.push(row);
                    if rows.len() == BATCH {
                        let full = std::mem::replace(&mut rows, Vec::with_capacity(BATCH));
                        let batch = ImportBatch::new(full, dialect);
                        if batches
                            .blocking_send(Ok((batch, std::mem::take(&mut decided))))
                            .is_err()
                        {
                            return reader.number;
                        }
                    }
                }
                Err(report) => decided.push(report),
            },
        }
    }
    let _ = batches.blocking_send(Ok((ImportBatch::new(rows, dialect), decided)));
    reader.number
}

/// A batch the store has applied: its rows with what became of each, and its other
/// lines; both in line order.
type Applied = (Vec<(ImportRow, ImportAction)>, Vec<LineReport>);

/// Reports every line of an applied batch, in order.
fn report_batch((done, decided): Applied, emit: &mut impl FnMut(LineReport)) {
    // Both lists are in line order: merge them back into one.
    let mut decided = decided.into_iter().peekable();
    for (row, action) in done {
        while let Some(report) = decided.next_if(|r| r.line < row.line) {
            emit(report);
        }
        let email = row.email;
        let outcome = match action {
            ImportAction::Added => LineOutcome::Added(email),
            ImportAction::Updated { old_name, new_name } => LineOutcome::Updated {
                email,
                old_name,
                new_name,
            },
            ImportAction::Unchanged => LineOutcome::Unchanged(email),
            ImportAction::SkippedSuppressed(status) => LineOutcome::Suppressed(email, status),
            ImportAction::Duplicate(first_line) => LineOutcome::Duplicate { email, first_line },
        };
        emit(LineReport {
            line: row.line,
            outcome,
        });
    }
    decided.for_each(emit);
}

/// Where the columns are, from the header row.
struct Columns {
    delimiter: Delimiter,
    email: usize,
    name: Option<usize>,
}

impl Columns {
    fn from_header(path: &Path, line: u64, text: &str) -> Result<Self, ImportError> {
        let mut comma_columns = None;
        for delimiter in [Delimiter::Comma, Delimiter::Semicolon, Delimiter::Tab] {
            let fields =
                split_fields(text, delimiter.byte()).map_err(|reason| ImportError::BadHeader {
                    path: path.to_owned(),
                    line,
                    reason,
                })?;
            let position = |want: &str| fields.iter().position(|h| h.eq_ignore_ascii_case(want));
            if let Some(email) = position("email") {
                return Ok(Self {
                    delimiter,
                    email,
                    name: position("name"),
                });
            }
            comma_columns.get_or_insert(fields);
        }
        Err(ImportError::NoEmailColumn {
            path: path.to_owned(),
            line,
            found: comma_columns
                .unwrap_or_default()
                .iter()
                .map(|c| format!("{c:?}"))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// One data line: a row to import, or its outcome already (blank or invalid).
    fn read(&self, line: Line<'_>) -> Result<ImportRow, LineReport> {
        let number = line.number;
        let invalid = |reason: String| LineReport {
            line: number,
            outcome: LineOutcome::Invalid(reason),
        };
        let text = line.text.map_err(invalid)?;
        let fields = split_fields(text, self.delimiter.byte()).map_err(invalid)?;
        if fields.iter().all(|f| f.is_empty()) {
            return Err(LineReport {
                line: number,
                outcome: LineOutcome::Blank,
            });
        }
        let raw_email = fields.get(self.email).map_or("", |f| f.as_ref());
        let email = SubscriberEmail::parse(raw_email)
            .map_err(|e| invalid(format!("'{raw_email}': {e}")))?;
        let name = match self
            .name
            .and_then(|c| fields.get(c))
            .filter(|n| !n.is_empty())
        {
            None => None,
            Some(n) => {
                Some(HeaderText::parse(n).map_err(|e| invalid(format!("{email}: the name {e}")))?)
            }
        };
        Ok(ImportRow {
            line: number,
            email,
            name,
        })
    }
}

/// Splits one line into trimmed fields. A field may be quoted (`"…"`, with `""` for a
/// quote); a quote inside an unquoted field is kept as it is. A quoted field that is not
/// closed on this line, or any field longer than [`MAX_FIELD`], is an error. A line
/// without quotes (nearly every line of a list) is split in place, copying nothing.
fn split_fields(line: &str, delimiter: u8) -> Result<Vec<Cow<'_, str>>, String> {
    if !line.contains('"') {
        let mut fields = Vec::with_capacity(4);
        for (at, field) in line.split(char::from(delimiter)).enumerate() {
            let field = field.trim();
            check_field_length(field, at + 1)?;
            fields.push(Cow::Borrowed(field));
        }
        return Ok(fields);
    }
    split_quoted_fields(line, delimiter)
}

/// [`split_fields`] for a line with a quote in it, a character at a time.
fn split_quoted_fields(line: &str, delimiter: u8) -> Result<Vec<Cow<'_, str>>, String> {
    let delimiter = char::from(delimiter);
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    let mut column = 1;
    loop {
        let mut field = String::new();
        while chars
            .peek()
            .is_some_and(|c| *c == ' ' || (*c == '\t' && delimiter != '\t'))
        {
            chars.next();
        }
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(format!(
                            "the quoted field in column {column} is not closed on this line \
                             (a field cannot run across lines; check for a stray '\"')"
                        ));
                    }
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
        }
        // Unquoted text, or what follows a closing quote, up to the delimiter.
        let mut more = false;
        for c in chars.by_ref() {
            if c == delimiter {
                more = true;
                break;
            }
            field.push(c);
        }
        let field = field.trim();
        check_field_length(field, column)?;
        fields.push(Cow::Owned(field.to_owned()));
        if !more {
            return Ok(fields);
        }
        column += 1;
    }
}

/// A field of more than [`MAX_FIELD`] characters is an error of its line.
fn check_field_length(field: &str, column: usize) -> Result<(), String> {
    // A character is at least one byte: only a longer field needs counting.
    if field.len() > MAX_FIELD && field.chars().count() > MAX_FIELD {
        return Err(format!(
            "column {column} is longer than {MAX_FIELD} characters"
        ));
    }
    Ok(())
}

/// One line of the file: its text (in the reader's buffer), or why it cannot be read.
struct Line<'a> {
    number: u64,
    text: Result<&'a str, String>,
}

/// Reads lines (ending in `\n` or `\r\n`) holding at most [`MAX_LINE`] bytes of one, so
/// a file without line breaks cannot fill the memory.
struct Lines<R> {
    reader: R,
    /// The file, for the errors that end the reading.
    path: PathBuf,
    number: u64,
    buf: Vec<u8>,
}

impl Lines<BufReader<std::fs::File>> {
    /// The file at `path`, refused at once if it starts with a UTF-16 byte-order mark.
    fn open(path: &Path) -> Result<Self, ImportError> {
        let read_error = |source| Self::read_error(path, source);
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        if let Some((encoding, iconv)) = utf16_mark(&mut reader).map_err(read_error)? {
            return Err(ImportError::Utf16 {
                path: path.to_owned(),
                encoding,
                iconv,
            });
        }
        Ok(Self::new(reader, path))
    }
}

impl<R: BufRead> Lines<R> {
    fn new(reader: R, path: &Path) -> Self {
        Self {
            reader,
            path: path.to_owned(),
            number: 0,
            buf: Vec::with_capacity(1024),
        }
    }

    /// Reading `path` failed: the import ends, nothing of it kept.
    fn read_error(path: &Path, source: std::io::Error) -> ImportError {
        ImportError::Read {
            path: path.to_owned(),
            source,
        }
    }

    /// Reads the next line into `buf`: its number and whether it fits in [`MAX_LINE`]
    /// (if not, `buf` holds only its start), or `None` at the end of the file.
    fn next_raw(&mut self) -> std::io::Result<Option<(u64, bool)>> {
        self.buf.clear();
        let mut too_long = false;
        let mut any = false;
        loop {
            let available = self.reader.fill_buf()?;
            if available.is_empty() {
                break;
            }
            any = true;
            let (chunk, end) = match available.iter().position(|b| *b == b'\n') {
                Some(i) => (&available[..i], Some(i + 1)),
                None => (available, None),
            };
            if too_long || self.buf.len() + chunk.len() > MAX_LINE {
                too_long = true;
            } else {
                self.buf.extend_from_slice(chunk);
            }
            let used = end.unwrap_or(chunk.len());
            self.reader.consume(used);
            if end.is_some() {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        self.number += 1;
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some((self.number, !too_long)))
    }

    /// The next line as text, or `None` at the end of the file. A line that is not
    /// UTF-8 is an error of the whole file, named with its likely encoding.
    fn next_line(&mut self) -> Result<Option<Line<'_>>, ImportError> {
        let next = self
            .next_raw()
            .map_err(|source| Self::read_error(&self.path, source))?;
        let Some((number, fits)) = next else {
            return Ok(None);
        };
        if !fits {
            let reason = format!("the line is longer than {MAX_LINE} bytes");
            return Ok(Some(Line {
                number,
                text: Err(reason),
            }));
        }
        let bytes = &self.buf[..];
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text),
            Err(e) => {
                let (encoding, iconv) = if bytes.contains(&0) {
                    ("UTF-16 without a byte-order mark", "utf-16le")
                } else if bytes.iter().any(|b| (0x80..0xA0).contains(b)) {
                    ("Windows-1252", "cp1252")
                } else {
                    ("Latin-1 (ISO-8859-1)", "latin1")
                };
                return Err(ImportError::NotUtf8 {
                    path: self.path.clone(),
                    line: number,
                    byte: bytes[e.valid_up_to()],
                    encoding,
                    iconv,
                });
            }
        };
        Ok(Some(Line { number, text }))
    }
}

/// The encoding and its `iconv` name if the file starts with a UTF-16 byte-order mark.
fn utf16_mark(reader: &mut impl BufRead) -> std::io::Result<Option<(&'static str, &'static str)>> {
    let start = reader.fill_buf()?;
    Ok(if start.starts_with(&[0xFF, 0xFE]) {
        Some(("UTF-16 little-endian", "utf-16"))
    } else if start.starts_with(&[0xFE, 0xFF]) {
        Some(("UTF-16 big-endian", "utf-16"))
    } else {
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_split_quote_and_trim() {
        assert_eq!(
            split_fields(" \"Lovelace, Ada\" , ada@example.org,", b',').unwrap(),
            ["Lovelace, Ada", "ada@example.org", ""]
        );
        assert_eq!(
            split_fields("Grace \"Amazing\" Hopper,g@example.org", b',').unwrap(),
            ["Grace \"Amazing\" Hopper", "g@example.org"]
        );
        assert_eq!(
            split_fields("\"say \"\"hi\"\"\";x@example.org", b';').unwrap(),
            ["say \"hi\"", "x@example.org"]
        );
        assert_eq!(split_fields("a\tb", b'\t').unwrap(), ["a", "b"]);
        assert_eq!(split_fields("", b',').unwrap(), [""]);
        assert_eq!(split_fields(",", b',').unwrap(), ["", ""]);
    }

    #[test]
    fn a_line_without_quotes_splits_as_the_quoted_reading_would() {
        // Every line of up to five characters from an alphabet of delimiters, blanks
        // (ASCII and not) and text: the in-place split gives what the character-at-a-time
        // reading gives.
        let alphabet = ['a', ',', ';', '\t', ' ', '\u{a0}', 'é'];
        let mut lines = vec![String::new()];
        let mut last = lines.clone();
        for _ in 0..5 {
            last = last
                .iter()
                .flat_map(|l| alphabet.iter().map(move |c| format!("{l}{c}")))
                .collect();
            lines.extend(last.iter().cloned());
        }
        lines.push(format!("{},b", "é".repeat(MAX_FIELD)));
        lines.push(format!("b, {}", "é".repeat(MAX_FIELD + 1)));
        for line in &lines {
            for delimiter in [b',', b';', b'\t'] {
                assert_eq!(
                    split_fields(line, delimiter),
                    split_quoted_fields(line, delimiter),
                    "{line:?} split on {:?}",
                    char::from(delimiter)
                );
            }
        }
    }

    #[test]
    fn a_stray_quote_is_an_error_of_its_line() {
        let err = split_fields("\"O Brien,ob@x.org", b',').unwrap_err();
        assert!(err.contains("column 1 is not closed on this line"), "{err}");
        let long = format!("{},a@example.org", "x".repeat(MAX_FIELD + 1));
        assert!(split_fields(&long, b',').unwrap_err().contains("column 1"));
    }

    #[test]
    fn lines_are_bounded_and_counted() {
        let text = format!("a\r\n\n{}\nlast", "y".repeat(MAX_LINE + 10));
        let mut lines = Lines::new(text.as_bytes(), Path::new("lines.csv"));
        let mut got = Vec::new();
        while let Some(line) = lines.next_line().unwrap() {
            let text = line.text.map(str::to_owned);
            got.push((line.number, text.map_err(|e| e.contains("longer"))));
        }
        assert_eq!(
            got,
            [
                (1, Ok("a".to_owned())),
                (2, Ok(String::new())),
                (3, Err(true)),
                (4, Ok("last".to_owned())),
            ]
        );
    }
}
