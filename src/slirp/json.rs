//! The JSON reader of the slirp4netns API: exactly what slirp4netns 1.2.0's
//! vendored parson accepts, no more and no less.
//!
//! # Why not serde_json
//!
//! The API's error replies distinguish "cannot parse JSON" from a parsed
//! request that is wrong, so *which* inputs parse is part of the interface
//! clients see, byte for byte. parson and serde_json disagree on real
//! inputs: parson skips a UTF-8 BOM, ignores anything after the first value
//! (and anything after a NUL byte: it reads a C string), accepts `1.` and
//! invalid UTF-8 inside strings, nests 2048 deep (serde_json stops at 128),
//! rejects duplicate keys (serde_json keeps the last), and treats `\v` and
//! `\f` as whitespace. A small reader that follows parson's grammar rule
//! for rule is less code than patching each of those around serde_json,
//! and the fuzz target (`fuzz/fuzz_targets/slirp_api.rs`) checks it
//! against serde_json wherever the two grammars agree.
//!
//! # Grammar (parson's)
//!
//! - The input ends at its first NUL byte; a leading UTF-8 BOM is skipped;
//!   whitespace is C's `isspace`; anything after the first value is ignored.
//! - Objects and arrays nest at most [`MAX_NESTING`] deep; an object key
//!   may appear once and may not contain NUL (`\u0000`).
//! - Strings: `\" \\ \/ \b \f \n \r \t \uXXXX` (surrogate pairs joined; a
//!   lone surrogate is an error), no raw control characters; other bytes are
//!   taken as they are, UTF-8 or not.
//! - Numbers as C's `strtod` reads them, then parson's checks: no leading
//!   zero before anything but `.` (`0`, `0.5`, `-0` are fine; `01`, `0e1`
//!   are not), no hexadecimal, and the value must be finite.
//!
//! [`parse`] also says whether a failure is *incomplete* input (more bytes
//! could still make it valid), so the server can wait for a request a
//! client writes in pieces instead of answering its first half.

/// Deepest nesting of objects and arrays parson accepts.
pub const MAX_NESTING: usize = 2048;

/// A parsed JSON value. Strings are bytes: parson does not check UTF-8.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(Vec<u8>),
    Array(Vec<Value>),
    /// Keys in input order (each at most once).
    Object(Vec<(Vec<u8>, Value)>),
}

/// Why the input is not a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// It ended too soon: more input could complete it.
    Incomplete,
    /// It cannot become valid, whatever follows.
    Invalid,
}

impl Value {
    /// The member `key` of an object (parson's `json_object_get_value`).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members
                .iter()
                .find(|(k, _)| k == key.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A dotted path, `arguments.proto` (parson's `json_object_dotget_value`).
    pub fn dotget(&self, path: &str) -> Option<&Value> {
        match path.split_once('.') {
            Some((first, rest)) => self.get(first)?.dotget(rest),
            None => self.get(path),
        }
    }

    /// The string as C sees it: up to its first NUL byte (parson hands
    /// strings to `strcmp` and `inet_pton`).
    pub fn c_str(&self) -> Option<&[u8]> {
        match self {
            Value::String(s) => Some(s.split(|b| *b == 0).next().unwrap_or(&[])),
            _ => None,
        }
    }

    /// The number, or 0 for anything else (parson's `json_value_get_number`).
    pub fn number_or_zero(value: Option<&Value>) -> f64 {
        match value {
            Some(Value::Number(n)) => *n,
            _ => 0.0,
        }
    }
}

/// C's `(int)` of a double as x86-64 computes it: truncation, and
/// `INT_MIN` for NaN and anything out of range.
pub fn c_int(n: f64) -> i32 {
    if n.is_nan() || n <= f64::from(i32::MIN) - 1.0 || n >= f64::from(i32::MAX) + 1.0 {
        i32::MIN
    } else {
        n.trunc() as i32
    }
}

/// Parses the first JSON value of `input` as parson's `json_parse_string`.
pub fn parse(input: &[u8]) -> Result<Value, Error> {
    let end = input.iter().position(|b| *b == 0).unwrap_or(input.len());
    let mut input = &input[..end];
    if input.starts_with(b"\xEF\xBB\xBF") {
        input = &input[3..];
    }
    let mut p = Parser { s: input, pos: 0 };
    p.value(0)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(
            self.peek(),
            Some(b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
        ) {
            self.pos += 1;
        }
    }

    /// Fails with `Incomplete` at the end of the input, `Invalid` otherwise.
    fn fail<T>(&self) -> Result<T, Error> {
        if self.pos >= self.s.len() {
            Err(Error::Incomplete)
        } else {
            Err(Error::Invalid)
        }
    }

    fn value(&mut self, nesting: usize) -> Result<Value, Error> {
        if nesting > MAX_NESTING {
            return Err(Error::Invalid);
        }
        self.skip_ws();
        match self.peek() {
            Some(b'{') => self.object(nesting + 1),
            Some(b'[') => self.array(nesting + 1),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.fail(),
        }
    }

    fn literal(&mut self, word: &[u8], value: Value) -> Result<Value, Error> {
        let rest = &self.s[self.pos..];
        if rest.starts_with(word) {
            self.pos += word.len();
            Ok(value)
        } else if word.starts_with(rest) {
            Err(Error::Incomplete)
        } else {
            Err(Error::Invalid)
        }
    }

    fn object(&mut self, nesting: usize) -> Result<Value, Error> {
        self.pos += 1; // '{'
        self.skip_ws();
        let mut members: Vec<(Vec<u8>, Value)> = Vec::new();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        while self.pos < self.s.len() {
            if self.peek() != Some(b'"') {
                return self.fail();
            }
            let key = self.string()?;
            if key.contains(&0) {
                return Err(Error::Invalid);
            }
            self.skip_ws();
            if self.peek() != Some(b':') {
                return self.fail();
            }
            self.pos += 1;
            let value = self.value(nesting)?;
            if members.iter().any(|(k, _)| *k == key) {
                return Err(Error::Invalid);
            }
            members.push((key, value));
            self.skip_ws();
            if self.peek() != Some(b',') {
                break;
            }
            self.pos += 1;
            self.skip_ws();
        }
        self.skip_ws();
        if self.peek() != Some(b'}') {
            return self.fail();
        }
        self.pos += 1;
        Ok(Value::Object(members))
    }

    fn array(&mut self, nesting: usize) -> Result<Value, Error> {
        self.pos += 1; // '['
        self.skip_ws();
        let mut items = Vec::new();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        while self.pos < self.s.len() {
            items.push(self.value(nesting)?);
            self.skip_ws();
            if self.peek() != Some(b',') {
                break;
            }
            self.pos += 1;
            self.skip_ws();
        }
        self.skip_ws();
        if self.peek() != Some(b']') {
            return self.fail();
        }
        self.pos += 1;
        Ok(Value::Array(items))
    }

    /// A quoted string at `pos` (which is on the opening quote).
    fn string(&mut self) -> Result<Vec<u8>, Error> {
        // First find the closing quote, skipping escaped characters.
        let start = self.pos + 1;
        let mut i = start;
        loop {
            match self.s.get(i) {
                None => return Err(Error::Incomplete),
                Some(b'"') => break,
                Some(b'\\') => {
                    if i + 1 >= self.s.len() {
                        return Err(Error::Incomplete);
                    }
                    i += 2;
                }
                Some(_) => i += 1,
            }
        }
        let inner = &self.s[start..i];
        self.pos = i + 1;
        unescape(inner).ok_or(Error::Invalid)
    }

    /// A number as `strtod` reads it, then parson's `is_decimal` and
    /// finiteness checks.
    fn number(&mut self) -> Result<Value, Error> {
        let rest = &self.s[self.pos..];
        let mut i = usize::from(rest.first() == Some(&b'-'));
        let after_sign = &rest[i..];
        let lower = |n: usize| -> Vec<u8> {
            after_sign
                .iter()
                .take(n)
                .map(u8::to_ascii_lowercase)
                .collect()
        };
        // strtod reads infinities and NaNs, which parson then refuses.
        if lower(3) == b"inf" || lower(3) == b"nan" {
            return Err(Error::Invalid);
        }
        let hex_digit = |j: usize| after_sign.get(j).is_some_and(u8::is_ascii_hexdigit);
        if after_sign.len() >= 2
            && after_sign[0] == b'0'
            && (after_sign[1] | 0x20) == b'x'
            && (hex_digit(2) || (after_sign.get(2) == Some(&b'.') && hex_digit(3)))
        {
            // strtod reads hexadecimal; parson refuses an 'x'.
            return Err(Error::Invalid);
        }
        let digits = |from: usize| {
            rest[from..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
        };
        let int_digits = digits(i);
        i += int_digits;
        let mut frac_digits = 0;
        if rest.get(i) == Some(&b'.') {
            frac_digits = digits(i + 1);
            if int_digits + frac_digits > 0 {
                i += 1 + frac_digits;
            }
        }
        if int_digits + frac_digits == 0 {
            // No conversion: strtod returns 0 and consumes nothing, and
            // parson takes that as the number 0 without moving on.
            return Ok(Value::Number(0.0));
        }
        if matches!(rest.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(rest.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            let exp_digits = digits(j);
            if exp_digits > 0 {
                i = j + exp_digits;
            }
        }
        let text = &rest[..i];
        // parson's is_decimal: no leading zero but before '.'.
        if text.len() > 1 && text[0] == b'0' && text[1] != b'.' {
            return Err(Error::Invalid);
        }
        if text.len() > 2 && text.starts_with(b"-0") && text[2] != b'.' {
            return Err(Error::Invalid);
        }
        let n: f64 = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or(Error::Invalid)?;
        if !n.is_finite() {
            return Err(Error::Invalid);
        }
        self.pos += i;
        Ok(Value::Number(n))
    }
}

/// The bytes of a string's inside with its escapes processed (parson's
/// `process_string`); `None` when it is not valid.
fn unescape(inner: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let b = inner[i];
        if b == b'\\' {
            let e = *inner.get(i + 1)?;
            i += 2;
            match e {
                b'"' => out.push(b'"'),
                b'\\' => out.push(b'\\'),
                b'/' => out.push(b'/'),
                b'b' => out.push(0x08),
                b'f' => out.push(0x0c),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'u' => {
                    let cp = hex4(inner.get(i..i + 4)?)?;
                    i += 4;
                    let cp = match cp {
                        0xD800..=0xDBFF => {
                            if inner.get(i..i + 2)? != b"\\u" {
                                return None;
                            }
                            let trail = hex4(inner.get(i + 2..i + 6)?)?;
                            if !(0xDC00..=0xDFFF).contains(&trail) {
                                return None;
                            }
                            i += 6;
                            (((cp - 0xD800) & 0x3FF) << 10 | ((trail - 0xDC00) & 0x3FF)) + 0x10000
                        }
                        0xDC00..=0xDFFF => return None,
                        _ => cp,
                    };
                    let ch = char::from_u32(cp)?;
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                _ => return None,
            }
        } else if b < 0x20 {
            return None;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, d| {
        let v = (*d as char).to_digit(16)?;
        Some(acc << 4 | v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &[u8]) -> Value {
        parse(s).unwrap_or_else(|e| panic!("{:?}: {e:?}", String::from_utf8_lossy(s)))
    }

    #[test]
    fn what_slirp4netns_answers_as_parsed() {
        // Each of these was sent to /usr/bin/slirp4netns 1.2.0 and answered
        // as a parsed request (not "cannot parse JSON").
        for s in [
            &b"  {\"execute\" : \"list_hostfwd\"}  "[..],
            b"{\"execute\":\"list_hostfwd\"} trailing",
            b"{\"execute\":\"list_hostfwd\"}{",
            b"{\"execute\":\"list_hostfwd\"}\x00garbage",
            b"\xef\xbb\xbf{\"execute\":\"list_hostfwd\"}",
            b"{\"execute\":\"list_hostfwd\",\"n\":\"\xff\"}",
            b"{\"execute\":\"list_hostfwd\",\"n\":1.}",
            b"null",
            b"\"x\"",
            b"[1]",
        ] {
            ok(s);
        }
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(2000), "]".repeat(2000));
        ok(deep.as_bytes());
    }

    #[test]
    fn what_slirp4netns_refuses() {
        // Each of these got "bad request: cannot parse JSON" from it.
        for s in [
            &b"{bad"[..],
            b"",
            b"{\"execute\":\"list_hostfwd\"",
            b"{\"execute\":\"list_hostfwd\" /* c */}",
            b"{\"execute\":\"list_hostfwd\",}",
            b"{'execute':'list_hostfwd'}",
            b"{\"execute\":\"list_hostfwd\",\"n\":01}",
            b"{\"execute\":\"list_hostfwd\",\"n\":NaN}",
            b"{\"execute\":\"list_hostfwd\",\"n\":1e999}",
            b"{\"execute\":\"list_hostfwd\",\"n\":\"a\tb\"}",
            b"{\"execute\":\"list_hostfwd\",\"n\":+1}",
            b"{\"execute\":\"list_hostfwd\",\"n\":0x10}",
            b"{\"execute\":\"list_hostfwd\",\"n\":\"\\ud800\"}",
            b"{\"execute\":\"list_hostfwd\",\"execute\":\"x\"}",
            b"{\"execute\":\"list_hostfwd\",\"a\":{\"b\":1,\"b\":2}}",
        ] {
            assert!(parse(s).is_err(), "{:?}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn incomplete_is_told_from_invalid() {
        for s in [
            &b""[..],
            b"{",
            b"{\"execute\":",
            b"{\"execute\":\"list_h",
            b"{\"execute\":tr",
            b"[1,",
            b"{\"a\":\"\\",
        ] {
            assert_eq!(
                parse(s),
                Err(Error::Incomplete),
                "{:?}",
                String::from_utf8_lossy(s)
            );
        }
        for s in [&b"{x"[..], b"{\"a\" 1}", b"[1 2]", b"{\"a\":tx}", b"]"] {
            assert_eq!(
                parse(s),
                Err(Error::Invalid),
                "{:?}",
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn values_and_paths() {
        let v = ok(br#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080.9,"s":"a\u00e9\ud83d\ude00\n"}}"#);
        assert_eq!(
            v.get("execute").and_then(Value::c_str),
            Some(&b"add_hostfwd"[..])
        );
        assert_eq!(
            Value::number_or_zero(v.dotget("arguments.host_port")),
            8080.9
        );
        assert_eq!(Value::number_or_zero(v.dotget("arguments.proto")), 0.0);
        assert_eq!(Value::number_or_zero(v.dotget("arguments.missing")), 0.0);
        assert_eq!(
            v.dotget("arguments.s"),
            Some(&Value::String("a\u{e9}\u{1f600}\n".as_bytes().to_vec()))
        );
        // A NUL inside a value is kept, but C sees the string end there.
        let v = ok(br#"{"execute":"list_hostfwd\u0000x"}"#);
        assert_eq!(
            v.get("execute").and_then(Value::c_str),
            Some(&b"list_hostfwd"[..])
        );
        // ...and a key may not hold one.
        assert!(parse(br#"{"a\u0000":1}"#).is_err());
    }

    #[test]
    fn numbers_as_strtod_and_parson_read_them() {
        let n = |s: &str| match parse(s.as_bytes()) {
            Ok(Value::Number(n)) => Some(n),
            _ => None,
        };
        assert_eq!(n("0"), Some(0.0));
        assert_eq!(n("-0"), Some(-0.0));
        assert_eq!(n("0.5"), Some(0.5));
        assert_eq!(n("1e3"), Some(1000.0));
        assert_eq!(n("1.e2"), Some(100.0));
        assert_eq!(n("12abc"), Some(12.0), "trailing input is ignored");
        assert_eq!(n("1e"), Some(1.0), "an exponent without digits is not read");
        assert_eq!(n("-"), Some(0.0), "strtod's no-conversion zero");
        assert_eq!(n("1e-400"), Some(0.0), "underflow is zero");
        for bad in [
            "00", "0e1", "-01", "-0e1", "-inf", "-nan", "0x1", "-0x1p3", "1e400",
        ] {
            assert_eq!(n(bad), None, "{bad}");
        }
    }

    #[test]
    fn c_int_is_x86_truncation() {
        assert_eq!(c_int(8080.9), 8080);
        assert_eq!(c_int(-5.5), -5);
        assert_eq!(c_int(1e30), i32::MIN);
        assert_eq!(c_int(f64::NAN), i32::MIN);
        assert_eq!(c_int(2147483647.9), i32::MAX);
        assert_eq!(c_int(-2147483648.9), i32::MIN);
    }

    #[test]
    fn nesting_is_bounded() {
        let at = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        assert!(parse(at(MAX_NESTING).as_bytes()).is_ok());
        assert!(parse(at(MAX_NESTING + 1).as_bytes()).is_err());
    }
}
