//! Docker's `--format`, `--filter`, `-q` and `--no-trunc`, for `ps`,
//! `network ls`, `inspect` and `network inspect`: one implementation.
//!
//! # Theory of operation
//!
//! Every listing and inspect turns what the daemon answered into JSON
//! values first: for `inspect`, the API's Docker-shaped objects as they
//! are; for the listings, one flat *row* per sandbox or network whose
//! fields are what Docker's formatter contexts offer (`.ID`, `.Names`,
//! `.Status`, …, all strings as in Docker). [`Format`] then renders each
//! value, as Docker's CLI does:
//!
//! - `table TEMPLATE` (and the default of each listing): the template
//!   per row, under a header row made by rendering the same template over
//!   the column titles, aligned by [`tabwrite`] (Go's `text/tabwriter` with
//!   Docker's settings: minimum width 10, padding 3);
//! - `json`: each value as one line of compact JSON, with the value's own
//!   key order (`{{json .}}` is the same);
//! - anything else: a Go template ([`gtmpl`]) rendered once per value, each
//!   followed by a newline. `\t` and `\n` written as two characters are a
//!   tab and a newline, as in Docker. Docker's template functions `json`,
//!   `join`, `split`, `lower`, `upper`, `title`, `pad` and `truncate` are
//!   there beside Go's built-ins.
//!
//! [`Filters`] are Docker's `--filter key=value`: values of one key are
//! alternatives, different keys must all match. `name` and `id` match as
//! Docker's do (the whole value, or an unanchored regular expression, so a
//! part of the name or id matches); `label` takes `key` or `key=value`,
//! and every label filter must match.
//!
//! Where gtmpl differs from Go's `text/template` is written down in
//! README.md ("Formatting output"); the tests at the bottom pin each
//! template Docker's documentation shows.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use gtmpl::{FuncError, Value};
use serde_json::Value as Json;

/// Docker's `text/tabwriter` settings for tables.
const MIN_WIDTH: usize = 10;
const PADDING: usize = 3;
/// Length of a short (truncated) id, as Docker's `stringid.TruncateID`.
pub const SHORT_ID: usize = 12;

/// How values are printed: a parsed `--format`.
pub struct Format {
    kind: Kind,
}

enum Kind {
    /// One compact JSON value per line.
    Json,
    /// A template per value, each followed by a newline.
    Template(Templates),
    /// A template per value under a header, aligned into columns.
    Table(Templates),
}

/// The same text parsed twice: for values, and for the header (Docker's
/// header functions leave their first argument as it is).
struct Templates {
    rows: gtmpl::Template,
    header: gtmpl::Template,
}

impl Format {
    /// Parses `--format` (`None` or empty: `default`, which is a `table …`
    /// format for the listings).
    pub fn parse(format: Option<&str>, default: &str) -> Result<Format> {
        let text = match format.map(str::trim) {
            None | Some("") | Some("table") => default,
            Some(f) => f,
        };
        let text = text.replace("\\t", "\t").replace("\\n", "\n");
        if text == "json" || text.trim() == "{{json .}}" {
            return Ok(Format { kind: Kind::Json });
        }
        let table = text
            .strip_prefix("table")
            .filter(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\n']));
        let body = table.unwrap_or(&text).trim_matches(' ');
        let templates = Templates {
            rows: template(body, false)?,
            header: template(body, true)?,
        };
        Ok(Format {
            kind: if table.is_some() {
                Kind::Table(templates)
            } else {
                Kind::Template(templates)
            },
        })
    }

    /// Whether this is the `json` format.
    pub fn is_json(&self) -> bool {
        matches!(self.kind, Kind::Json)
    }

    /// Renders every value. `headers` names the columns of a table (field
    /// → title); `strict`: a field the values lack is an error (the
    /// listings' rows, as Go's structs), else `<no value>` (inspect's
    /// JSON, as Go's maps).
    pub fn render(
        &self,
        values: &[Json],
        headers: &BTreeMap<&str, &str>,
        strict: bool,
    ) -> Result<String> {
        let mut out = String::new();
        match &self.kind {
            Kind::Json => {
                for v in values {
                    out.push_str(&serde_json::to_string(v)?);
                    out.push('\n');
                }
            }
            Kind::Template(t) => {
                for v in values {
                    out.push_str(&execute(&t.rows, to_value(v, strict))?);
                    out.push('\n');
                }
            }
            Kind::Table(t) => {
                let titles: std::collections::HashMap<String, Value> = headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), Value::from(*v)))
                    .collect();
                let mut text = execute(&t.header, Value::Map(titles))?;
                text.push('\n');
                for v in values {
                    text.push_str(&execute(&t.rows, to_value(v, strict))?);
                    text.push('\n');
                }
                out = tabwrite(&text, MIN_WIDTH, PADDING);
            }
        }
        Ok(out)
    }
}

/// `template` with Docker's functions (or, for the header, functions that
/// give back their first argument).
fn template(text: &str, header: bool) -> Result<gtmpl::Template> {
    let mut t = gtmpl::Template::default();
    let funcs: &[(&str, gtmpl::Func)] = if header {
        &[
            ("json", first_arg),
            ("join", first_arg),
            ("split", first_arg),
            ("lower", first_arg),
            ("upper", first_arg),
            ("title", first_arg),
            ("pad", first_arg),
            ("truncate", first_arg),
        ]
    } else {
        &[
            ("json", json_fn),
            ("join", join_fn),
            ("split", split_fn),
            ("lower", lower_fn),
            ("upper", upper_fn),
            ("title", title_fn),
            ("pad", pad_fn),
            ("truncate", truncate_fn),
            ("len", len_fn),
            ("eq", eq_fn),
            ("ne", ne_fn),
        ]
    };
    t.add_funcs(funcs);
    t.parse(text)
        .map_err(|e| anyhow!("template parsing error: {e}"))?;
    Ok(t)
}

fn execute(t: &gtmpl::Template, dot: Value) -> Result<String> {
    t.render(&gtmpl::Context::from(dot))
        .map_err(|e| anyhow!("template parsing error: {e}"))
}

/// A JSON value as gtmpl's: objects become maps (`strict`: objects, whose
/// missing fields are errors).
pub fn to_value(v: &Json, strict: bool) -> Value {
    match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::Array(a.iter().map(|x| to_value(x, strict)).collect()),
        Json::Object(o) => {
            let m = o
                .iter()
                .map(|(k, x)| (k.clone(), to_value(x, strict)))
                .collect();
            if strict {
                Value::Object(m)
            } else {
                Value::Map(m)
            }
        }
    }
}

/// gtmpl's value as JSON (maps with sorted keys).
fn to_json(v: &Value) -> Json {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Json::from(u)
            } else if let Some(i) = n.as_i64() {
                Json::from(i)
            } else {
                n.as_f64().map(Json::from).unwrap_or(Json::Null)
            }
        }
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Object(m) | Value::Map(m) => {
            let sorted: BTreeMap<&String, Json> = m.iter().map(|(k, x)| (k, to_json(x))).collect();
            Json::Object(sorted.into_iter().map(|(k, x)| (k.clone(), x)).collect())
        }
    }
}

fn arg<'a>(args: &'a [Value], i: usize, name: &str) -> Result<&'a Value, FuncError> {
    args.get(i)
        .ok_or_else(|| FuncError::ExactlyXArgs(name.into(), i + 1))
}

fn string_arg(args: &[Value], i: usize, name: &str) -> Result<String, FuncError> {
    match arg(args, i, name)? {
        Value::String(s) => Ok(s.clone()),
        Value::NoValue | Value::Nil => Ok(String::new()),
        other => Ok(other.to_string()),
    }
}

fn int_arg(args: &[Value], i: usize, name: &str) -> Result<usize, FuncError> {
    match arg(args, i, name)? {
        Value::Number(n) => n
            .as_u64()
            .map(|u| u as usize)
            .ok_or(FuncError::UnableToConvertFromValue),
        _ => Err(FuncError::UnableToConvertFromValue),
    }
}

fn first_arg(args: &[Value]) -> Result<Value, FuncError> {
    Ok(arg(args, 0, "header")?.clone())
}

/// `json`: the value as compact JSON (Go's encoder without HTML escaping).
fn json_fn(args: &[Value]) -> Result<Value, FuncError> {
    let v = to_json(arg(args, 0, "json")?);
    serde_json::to_string(&v)
        .map(Value::String)
        .map_err(|e| FuncError::Generic(e.to_string()))
}

/// `join LIST SEP`.
fn join_fn(args: &[Value]) -> Result<Value, FuncError> {
    let sep = string_arg(args, 1, "join")?;
    match arg(args, 0, "join")? {
        Value::Array(a) => Ok(Value::String(
            a.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(&sep),
        )),
        Value::String(s) => Ok(Value::String(s.clone())),
        _ => Err(FuncError::UnableToConvertFromValue),
    }
}

/// `split STRING SEP`.
fn split_fn(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "split")?;
    let sep = string_arg(args, 1, "split")?;
    let parts: Vec<Value> = if sep.is_empty() {
        s.chars().map(|c| Value::String(c.to_string())).collect()
    } else {
        s.split(sep.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect()
    };
    Ok(Value::Array(parts))
}

/// `len`, of maps too (gtmpl's takes only strings and lists).
fn len_fn(args: &[Value]) -> Result<Value, FuncError> {
    match arg(args, 0, "len")? {
        Value::String(s) => Ok(Value::from(s.len() as u64)),
        Value::Array(a) => Ok(Value::from(a.len() as u64)),
        Value::Object(m) | Value::Map(m) => Ok(Value::from(m.len() as u64)),
        _ => Err(FuncError::Generic(
            "len of a value that has no length".into(),
        )),
    }
}

/// Whether two values are equal as Go's `eq` sees them (numbers by value).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        _ => a == b,
    }
}

/// `eq A B...`: whether A equals any of the others, as Go's.
fn eq_fn(args: &[Value]) -> Result<Value, FuncError> {
    if args.len() < 2 {
        return Err(FuncError::AtLeastXArgs("eq".into(), 2));
    }
    Ok(Value::Bool(args[1..].iter().any(|b| same(&args[0], b))))
}

fn ne_fn(args: &[Value]) -> Result<Value, FuncError> {
    if args.len() != 2 {
        return Err(FuncError::ExactlyXArgs("ne".into(), 2));
    }
    Ok(Value::Bool(!same(&args[0], &args[1])))
}

fn lower_fn(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(string_arg(args, 0, "lower")?.to_lowercase()))
}

fn upper_fn(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(string_arg(args, 0, "upper")?.to_uppercase()))
}

/// `title`: the first letter of every word upper-cased (Go's
/// `strings.Title`).
fn title_fn(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "title")?;
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphanumeric() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    Ok(Value::String(out))
}

/// `pad STRING BEFORE AFTER`: spaces around.
fn pad_fn(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "pad")?;
    let before = int_arg(args, 1, "pad")?;
    let after = int_arg(args, 2, "pad")?;
    Ok(Value::String(format!(
        "{}{s}{}",
        " ".repeat(before),
        " ".repeat(after)
    )))
}

/// `truncate STRING N`: the first N characters.
fn truncate_fn(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "truncate")?;
    let n = int_arg(args, 1, "truncate")?;
    Ok(Value::String(s.chars().take(n).collect()))
}

/// Aligns tab-separated cells into columns as Go's `text/tabwriter` with
/// padding character ' ' and no flags: a column (a run of consecutive
/// lines that have a tab-terminated cell there) is as wide as its widest
/// cell plus `padding`, and at least `minwidth`; the last cell of a line is
/// never padded.
pub fn tabwrite(text: &str, minwidth: usize, padding: usize) -> String {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let lines: Vec<Vec<&str>> = body.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut w = TabWriter {
        lines: &lines,
        minwidth,
        padding,
        widths: Vec::new(),
        out: String::new(),
    };
    w.format(0, lines.len());
    if text.ends_with('\n') {
        w.out.push('\n');
    }
    w.out
}

struct TabWriter<'a> {
    lines: &'a [Vec<&'a str>],
    minwidth: usize,
    padding: usize,
    widths: Vec<usize>,
    out: String,
}

impl TabWriter<'_> {
    fn format(&mut self, line0: usize, line1: usize) {
        let column = self.widths.len();
        let mut start = line0;
        let mut this = line0;
        while this < line1 {
            if column + 1 >= self.lines[this].len() {
                this += 1;
                continue;
            }
            // A block of lines with a cell in this column begins here.
            self.write_lines(start, this);
            start = this;
            let mut width = self.minwidth;
            while this < line1 && column + 1 < self.lines[this].len() {
                width = width.max(self.lines[this][column].chars().count() + self.padding);
                this += 1;
            }
            self.widths.push(width);
            self.format(start, this);
            self.widths.pop();
            start = this;
        }
        self.write_lines(start, line1);
    }

    fn write_lines(&mut self, line0: usize, line1: usize) {
        for i in line0..line1 {
            let line = &self.lines[i];
            for (j, cell) in line.iter().enumerate() {
                self.out.push_str(cell);
                if let Some(w) = self.widths.get(j) {
                    let pad = w.saturating_sub(cell.chars().count());
                    self.out.extend(std::iter::repeat(' ').take(pad));
                }
            }
            if i + 1 < self.lines.len() {
                self.out.push('\n');
            }
        }
    }
}

/// Docker's `--filter key=value`s, by key.
#[derive(Debug, Default, Clone)]
pub struct Filters {
    by_key: BTreeMap<String, Vec<String>>,
}

impl Filters {
    /// Parses `key=value` items, refusing keys not in `accepted`.
    pub fn parse(items: &[String], accepted: &[&str]) -> Result<Filters> {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for item in items {
            let Some((k, v)) = item.split_once('=') else {
                bail!("bad format of filter (expected name=value): {item:?}");
            };
            let k = k.trim().to_ascii_lowercase();
            if !accepted.contains(&k.as_str()) {
                bail!(
                    "invalid filter '{k}' (filters here: {})",
                    accepted.join(", ")
                );
            }
            by_key.entry(k).or_default().push(v.to_string());
        }
        Ok(Filters { by_key })
    }

    /// Whether any filter has this key.
    pub fn has(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    /// The values given for `key`.
    pub fn values(&self, key: &str) -> &[String] {
        self.by_key.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Docker's `Match`: true without a filter on `key`; else when a value
    /// is `source` or, as an unanchored regular expression, matches it.
    pub fn matches(&self, key: &str, source: &str) -> bool {
        let values = self.values(key);
        values.is_empty()
            || values
                .iter()
                .any(|v| v == source || regex::Regex::new(v).is_ok_and(|re| re.is_match(source)))
    }

    /// Docker's `ExactMatch`: true without a filter on `key`; else when a
    /// value is `source`.
    pub fn exact(&self, key: &str, source: &str) -> bool {
        let values = self.values(key);
        values.is_empty() || values.iter().any(|v| v == source)
    }

    /// Docker's `MatchKVList` for `label`: every `key` or `key=value`
    /// given is among `labels`.
    pub fn labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.values("label")
            .iter()
            .all(|v| match v.split_once('=') {
                Some((k, want)) => labels.get(k).is_some_and(|have| have == want),
                None => labels.contains_key(v.as_str()),
            })
    }
}

/// Docker's `Ellipsis`: at most `n` characters, the last one `…` when cut.
/// `-q`: the ids of `rows`, one a line (with Docker's warning when a
/// `--format` was given too).
pub fn print_quiet(rows: &[Json], format_given: bool) {
    if format_given {
        eprintln!("WARNING: Ignoring custom format, because both --format and --quiet are set.");
    }
    for r in rows {
        println!("{}", r["ID"].as_str().unwrap_or_default());
    }
}

pub fn ellipsis(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// Natural order, as the `sortorder.NaturalLess` that `docker port` sorts
/// with: runs of digits compare as numbers (a shorter number, leading
/// zeros aside, is smaller; equal numbers with fewer leading zeros come
/// first), a digit comes before any other byte, other bytes compare as
/// bytes; when one text is a prefix of the other, the shorter comes first.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (da, db) = (a[i].is_ascii_digit(), b[j].is_ascii_digit());
        if da != db {
            return if da {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        if !da {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
            continue;
        }
        let number = |s: &[u8], mut k: usize| {
            while k < s.len() && s[k] == b'0' {
                k += 1;
            }
            let start = k;
            while k < s.len() && s[k].is_ascii_digit() {
                k += 1;
            }
            (start, k)
        };
        let ((sa, ea), (sb, eb)) = (number(a, i), number(b, j));
        let by_digits = (ea - sa)
            .cmp(&(eb - sb))
            .then_with(|| a[sa..ea].cmp(&b[sb..eb]))
            .then_with(|| (sa - i).cmp(&(sb - j)));
        if by_digits != Ordering::Equal {
            return by_digits;
        }
        (i, j) = (ea, eb);
    }
    (a.len() - i).cmp(&(b.len() - j))
}

/// The first [`SHORT_ID`] characters of an id.
pub fn short_id(id: &str) -> &str {
    id.get(..SHORT_ID).unwrap_or(id)
}

/// Labels as Docker's listings show them: `k=v,k2=v2` (sorted).
pub fn labels_column(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// An RFC 3339 time as Go's `time.Time.String()` in UTC, which Docker's
/// `CreatedAt` columns show: `2024-01-02 10:00:00.5 +0000 UTC`. Text that
/// does not parse is returned as it is.
pub fn go_time(rfc3339: &str) -> String {
    go_time_as(rfc3339, true)
}

/// [`go_time`] in whole seconds, as Docker's `ps` shows `CreatedAt`
/// (`time.Unix(created, 0).String()`): `2024-01-02 10:00:00 +0000 UTC`.
pub fn go_time_secs(rfc3339: &str) -> String {
    go_time_as(rfc3339, false)
}

fn go_time_as(rfc3339: &str, fraction: bool) -> String {
    let Ok(t) = humantime::parse_rfc3339_weak(rfc3339.trim_end_matches('Z')) else {
        return rfc3339.to_string();
    };
    let text = humantime::format_rfc3339_nanos(t).to_string();
    // 2024-01-02T10:00:00.500000000Z
    let Some((date, rest)) = text.split_once('T') else {
        return rfc3339.to_string();
    };
    let rest = rest.trim_end_matches('Z');
    let (clock, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() || !fraction {
        format!("{date} {clock} +0000 UTC")
    } else {
        format!("{date} {clock}.{frac} +0000 UTC")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(format: &str, values: &[Json], strict: bool) -> String {
        let headers = BTreeMap::from([
            ("ID", "SANDBOX ID"),
            ("Names", "NAMES"),
            ("Status", "STATUS"),
        ]);
        Format::parse(Some(format), "table {{.ID}}")
            .unwrap()
            .render(values, &headers, strict)
            .unwrap()
    }

    fn rows() -> Vec<Json> {
        vec![
            json!({"ID": "0123456789ab", "Names": "web", "Status": "Up 5 seconds"}),
            json!({"ID": "ba9876543210", "Names": "db-primary", "Status": "Exited (3) 2 seconds ago"}),
        ]
    }

    #[test]
    fn custom_template_one_line_per_row() {
        // docker ps --format "{{.ID}}: {{.Names}}"
        assert_eq!(
            render("{{.ID}}: {{.Names}}", &rows(), true),
            "0123456789ab: web\nba9876543210: db-primary\n"
        );
        // A literal \t is a tab.
        assert_eq!(
            render(r"{{.Names}}\t{{.Status}}", &rows()[..1], true),
            "web\tUp 5 seconds\n"
        );
    }

    #[test]
    fn table_has_header_and_docker_columns() {
        // docker ps --format "table {{.ID}}\t{{.Names}}\t{{.Status}}"
        let out = render(r"table {{.ID}}\t{{.Names}}\t{{.Status}}", &rows(), true);
        assert_eq!(
            out,
            "SANDBOX ID     NAMES        STATUS\n\
             0123456789ab   web          Up 5 seconds\n\
             ba9876543210   db-primary   Exited (3) 2 seconds ago\n"
        );
        // Columns are at least 10 wide (Docker's tabwriter minimum).
        let out = render(r"table {{.Names}}\t{{.Status}}", &rows()[..1], true);
        assert_eq!(out, "NAMES     STATUS\nweb       Up 5 seconds\n");
        // `table` alone is the default format.
        assert_eq!(
            render("table", &rows()[..1], true),
            "SANDBOX ID\n0123456789ab\n"
        );
    }

    #[test]
    fn json_is_one_object_per_line() {
        let out = render("json", &rows(), true);
        let lines: Vec<Json> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, rows());
        assert_eq!(render("{{json .}}", &rows(), true), out);
        // json inside a template (keys sorted).
        assert_eq!(render("{{json .Names}}", &rows()[..1], true), "\"web\"\n");
    }

    #[test]
    fn unknown_field_of_a_row_is_an_error_as_in_go() {
        let f = Format::parse(Some("{{.Nope}}"), "").unwrap();
        assert!(f.render(&rows(), &BTreeMap::new(), true).is_err());
        // Of a map (inspect's JSON): <no value>, as Go's maps.
        assert_eq!(render("{{.Nope}}", &rows()[..1], false), "<no value>\n");
        // A template that does not parse names itself.
        let e = Format::parse(Some("{{.ID"), "").err().unwrap();
        assert!(e.to_string().starts_with("template parsing error"), "{e}");
    }

    #[test]
    fn inspect_templates_from_dockers_documentation() {
        let sandbox = json!({
            "Id": "abc",
            "State": {"Status": "running", "Pid": 1234567, "Running": true},
            "Config": {"Cmd": ["sleep", "600"], "Hostname": "web"},
            "NetworkSettings": {"Networks": {"dev": {"IPAddress": "10.66.0.2", "MacAddress": "02:42:0a:42:00:02"}}}
        });
        let one = |f: &str| render(f, std::slice::from_ref(&sandbox), false);
        assert_eq!(
            one("{{.NetworkSettings.Networks.dev.IPAddress}}"),
            "10.66.0.2\n"
        );
        assert_eq!(
            one("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"),
            "10.66.0.2\n"
        );
        assert_eq!(
            one("{{range $net, $v := .NetworkSettings.Networks}}{{$net}} {{$v.MacAddress}}{{end}}"),
            "dev 02:42:0a:42:00:02\n"
        );
        assert_eq!(one("{{.State.Pid}}"), "1234567\n");
        assert_eq!(one("{{.State.Running}}"), "true\n");
        assert_eq!(
            one("{{json .Config}}"),
            "{\"Cmd\":[\"sleep\",\"600\"],\"Hostname\":\"web\"}\n"
        );
        assert_eq!(one("{{join .Config.Cmd \" \"}}"), "sleep 600\n");
        assert_eq!(one("{{index .Config.Cmd 1}}"), "600\n");
        assert_eq!(one("{{upper .State.Status}}"), "RUNNING\n");
        assert_eq!(one("{{title .State.Status}}"), "Running\n");
        assert_eq!(one("{{if .State.Running}}up{{else}}down{{end}}"), "up\n");
        assert_eq!(one("{{len .Config.Cmd}}"), "2\n");
        // `{{json .}}`: the value itself, keys in its own order.
        assert_eq!(one("{{json .}}"), format!("{sandbox}\n"));

        let network =
            json!({"IPAM": {"Config": [{"Subnet": "10.66.0.0/16", "Gateway": "10.66.0.1"}]}});
        assert_eq!(
            render(
                "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
                std::slice::from_ref(&network),
                false
            ),
            "10.66.0.0/16\n"
        );
        assert_eq!(
            render("{{(index .IPAM.Config 0).Gateway}}", &[network], false),
            "10.66.0.1\n"
        );
    }

    #[test]
    fn docker_functions() {
        let v = json!({"S": "a,b,c", "P": "x"});
        let one = |f: &str| render(f, std::slice::from_ref(&v), false);
        assert_eq!(one("{{join (split .S \",\") \"|\"}}"), "a|b|c\n");
        assert_eq!(one("{{pad .P 2 1}}|"), "  x |\n");
        assert_eq!(one("{{truncate .S 3}}"), "a,b\n");
        assert_eq!(one("{{lower \"AbC\"}}"), "abc\n");
        // In a table header the functions leave the title alone.
        let headers = BTreeMap::from([("P", "PEE")]);
        let out = Format::parse(Some("table {{lower .P}}"), "")
            .unwrap()
            .render(&[v], &headers, false)
            .unwrap();
        assert_eq!(out, "PEE\nx\n");
    }

    #[test]
    fn tabwriter_matches_go() {
        assert_eq!(tabwrite("a\tb\nccc\td\n", 0, 1), "a   b\nccc d\n");
        // A line without the column ends the block.
        assert_eq!(tabwrite("aaaa\tb\nx\ny\tz\n", 0, 1), "aaaa b\nx\ny z\n");
        assert_eq!(tabwrite("é\tb\n", 3, 0), "é  b\n");
    }

    #[test]
    fn filters_as_docker() {
        let f = Filters::parse(
            &[
                "name=web".into(),
                "name=^db".into(),
                "label=tier".into(),
                "label=team=a".into(),
            ],
            &["name", "label"],
        )
        .unwrap();
        assert!(f.matches("name", "web"));
        assert!(f.matches("name", "my-web-1"), "a part of the name");
        assert!(f.matches("name", "db-primary"));
        assert!(!f.matches("name", "mydb"));
        assert!(f.matches("id", "anything"), "no id filter");
        let labels = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(f.labels(&labels(&[("tier", "x"), ("team", "a")])));
        assert!(!f.labels(&labels(&[("tier", "x"), ("team", "b")])));
        assert!(!f.labels(&labels(&[("team", "a")])));
        assert!(Filters::parse(&["nope=1".into()], &["name"])
            .unwrap_err()
            .to_string()
            .starts_with("invalid filter 'nope'"));
        assert!(Filters::parse(&["name".into()], &["name"])
            .unwrap_err()
            .to_string()
            .starts_with("bad format of filter"));
    }

    #[test]
    fn columns_as_docker() {
        assert_eq!(ellipsis("sleep 600", 20), "sleep 600");
        assert_eq!(
            ellipsis("python3 -m http.server 8080", 20),
            "python3 -m http.ser…"
        );
        assert_eq!(short_id("0123456789abcdef"), "0123456789ab");
        assert_eq!(
            go_time("2024-01-02T10:00:00.500000000Z"),
            "2024-01-02 10:00:00.5 +0000 UTC"
        );
        assert_eq!(
            go_time("2024-01-02T10:00:00Z"),
            "2024-01-02 10:00:00 +0000 UTC"
        );
        assert_eq!(
            go_time_secs("2024-01-02T10:00:00.500000000Z"),
            "2024-01-02 10:00:00 +0000 UTC"
        );
    }

    #[test]
    fn natural_order_as_dockers_port() {
        let mut v = vec![
            "8000/tcp -> 0.0.0.0:8000",
            "90/tcp -> 0.0.0.0:9090",
            "443/udp -> 0.0.0.0:443",
            "443/tcp -> 127.0.0.1:8443",
            "443/tcp -> 0.0.0.0:8443",
            "9/tcp -> 0.0.0.0:10",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            [
                "9/tcp -> 0.0.0.0:10",
                "90/tcp -> 0.0.0.0:9090",
                "443/tcp -> 0.0.0.0:8443",
                "443/tcp -> 127.0.0.1:8443",
                "443/udp -> 0.0.0.0:443",
                "8000/tcp -> 0.0.0.0:8000",
            ]
        );
        use std::cmp::Ordering::*;
        assert_eq!(natural_cmp("a2", "a10"), Less);
        assert_eq!(natural_cmp("a02", "a2"), Greater, "more zeros after");
        assert_eq!(natural_cmp("a", "a1"), Less, "a prefix first");
        assert_eq!(natural_cmp("1", "a"), Less, "digits first");
        assert_eq!(natural_cmp("x9y", "x9y"), Equal);
    }

    /// Where gtmpl differs from Go's text/template (README.md, "Formatting
    /// output"): pinned, so an upgrade that fixes one is noticed.
    #[test]
    fn where_gtmpl_differs_from_go() {
        let v = json!({"A": ["x", "y"], "N": null, "M": {"a": "1", "b": "2"}});
        let one = |f: &str| render(f, std::slice::from_ref(&v), false);
        // Go: "xy"; gtmpl also runs the else branch after a non-empty range.
        assert_eq!(one("{{range .A}}{{.}}{{else}}none{{end}}"), "xynone\n");
        // Go: "[x y]" and "<nil>".
        assert_eq!(one("{{.A}}"), "[String(\"x\"), String(\"y\")]\n");
        assert_eq!(one("{{.N}}"), "nil\n");
        // printf %v prints a list as Go does.
        assert_eq!(one("{{printf \"%v\" .A}}"), "[x y]\n");
        // Not there: slice, html, js, break, continue.
        assert!(Format::parse(Some("{{slice .A 1}}"), "").is_err());
        // Ours, as Go's: len of a map, eq with several candidates.
        assert_eq!(one("{{len .M}}"), "2\n");
        assert_eq!(one("{{eq \"b\" \"a\" \"b\"}}"), "true\n");
        assert_eq!(one("{{ne 1 2}}"), "true\n");
    }
}
