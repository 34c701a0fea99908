//! A device's readings at one observation time, packed into the `readings` blob of one
//! `observations` row (see the schema): per reading its series id (LEB128), its value
//! (f64, little-endian) and its status code (one byte).
//!
//! One row per message instead of one per reading is what lets the single writer keep up with
//! the broker: a commit inserts one row and one index entry per message, not six of each
//! (BENCHMARKS.md, finding 17). SQL reads a series out of a row with the functions
//! [`register`] adds to every connection; Rust code walks a row with [`decode`].

use rusqlite::{
    Connection,
    functions::{Context, FunctionFlags},
    types::ValueRef,
};

/// One reading of a row: series id, value, status code.
pub type Packed = (i64, f64, i64);

/// Append a reading to a row's blob.
pub fn encode(out: &mut Vec<u8>, series_id: i64, value: f64, status: i64) {
    let mut id = series_id as u64;
    loop {
        let byte = (id & 0x7f) as u8;
        id >>= 7;
        if id == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&value.to_le_bytes());
    out.push(status as u8);
}

/// The readings of a row's blob, in the order they were written.
pub fn decode(blob: &[u8]) -> Decode<'_> {
    Decode { rest: blob }
}

/// A readings blob that does not decode: truncated, a series id longer than nine LEB128 bytes,
/// or (given to the SQL functions) not a blob at all; the text says which. Rust readers of the
/// log report it as `StoreError::Corrupt`, the SQL functions as an error of their statement.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("corrupt readings blob: {0}")]
pub struct Corrupt(&'static str);

/// The readings of a blob, from [`decode`]: each `Ok` in the order written, or one `Err` at the
/// first malformed reading, after which it yields nothing more.
pub struct Decode<'a> {
    rest: &'a [u8],
}

impl Iterator for Decode<'_> {
    type Item = Result<Packed, Corrupt>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = self.take();
        if item.is_err() {
            self.rest = &[];
        }
        Some(item)
    }
}

impl Decode<'_> {
    fn take(&mut self) -> Result<Packed, Corrupt> {
        let mut id = 0u64;
        let mut shift = 0;
        loop {
            let (&byte, rest) = self
                .rest
                .split_first()
                .ok_or(Corrupt("truncated series id"))?;
            self.rest = rest;
            if shift > 56 {
                return Err(Corrupt("series id too long"));
            }
            id |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        if self.rest.len() < 9 {
            return Err(Corrupt("truncated value"));
        }
        let (value, rest) = self.rest.split_at(8);
        let value = f64::from_le_bytes(value.try_into().expect("eight bytes"));
        let status = i64::from(rest[0]);
        self.rest = &rest[1..];
        Ok((id as i64, value, status))
    }
}

/// Add to `conn`: `reading_value(readings, series_id)` and `reading_status(readings,
/// series_id)`, the value and status of that series in a row (NULL when the row has none), and
/// `reading_count(readings)`.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8
        | FunctionFlags::SQLITE_DETERMINISTIC
        | FunctionFlags::SQLITE_INNOCUOUS;
    conn.create_scalar_function("reading_value", 2, flags, |ctx| {
        Ok(find(ctx)?.map(|(_, value, _)| value))
    })?;
    conn.create_scalar_function("reading_status", 2, flags, |ctx| {
        Ok(find(ctx)?.map(|(_, _, status)| status))
    })?;
    conn.create_scalar_function("reading_count", 1, flags, |ctx| {
        let mut n = 0i64;
        for r in decode(blob(ctx)?) {
            r.map_err(user_error)?;
            n += 1;
        }
        Ok(n)
    })
}

fn find(ctx: &Context<'_>) -> rusqlite::Result<Option<Packed>> {
    let series: i64 = ctx.get(1)?;
    for r in decode(blob(ctx)?) {
        let r = r.map_err(user_error)?;
        if r.0 == series {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

fn blob<'a>(ctx: &'a Context<'_>) -> rusqlite::Result<&'a [u8]> {
    match ctx.get_raw(0) {
        ValueRef::Blob(b) => Ok(b),
        _ => Err(user_error(Corrupt("not a blob"))),
    }
}

fn user_error(e: Corrupt) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_round_trip_and_corruption_is_an_error() {
        let readings = [
            (1, 12.5, 0),
            (127, -0.25, 1),
            (128, f64::MAX, 2),
            (i64::MAX, 0.0, 0),
        ];
        let mut blob = Vec::new();
        for (id, v, s) in readings {
            encode(&mut blob, id, v, s);
        }
        let back: Vec<Packed> = decode(&blob).collect::<Result<_, _>>().unwrap();
        assert_eq!(back, readings);
        assert!(decode(&[]).next().is_none());
        assert_eq!(
            decode(&blob[..blob.len() - 1]).last(),
            Some(Err(Corrupt("truncated value")))
        );
        assert_eq!(
            decode(&[0x80]).next(),
            Some(Err(Corrupt("truncated series id")))
        );
    }

    #[test]
    fn sql_reads_one_series_out_of_a_row() {
        let conn = Connection::open_in_memory().unwrap();
        register(&conn).unwrap();
        let mut blob = Vec::new();
        encode(&mut blob, 7, 35.5, 0);
        encode(&mut blob, 300, 80.0, 2);
        let (v, s, missing, n): (f64, i64, Option<f64>, i64) = conn
            .query_row(
                "SELECT reading_value(?1, 7), reading_status(?1, 300), reading_value(?1, 8),
                        reading_count(?1)",
                [&blob],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!((v, s, missing, n), (35.5, 2, None, 2));
        let err = conn
            .query_row("SELECT reading_count(x'80')", [], |r| r.get::<_, i64>(0))
            .unwrap_err();
        assert!(err.to_string().contains("truncated series id"), "{err}");
    }
}
