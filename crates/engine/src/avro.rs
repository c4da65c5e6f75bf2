//! Avro binary encoding of the unified records and the Confluent wire format around it.
//!
//! The chains write their fields in schema order through [`AvroWriter`]: the Avro binary
//! encoding is a handful of varint and length-prefixed rules, and writing it directly avoids
//! building an `apache_avro::types::Value` tree and validating it against the schema for every
//! event on the hot path. Every chain has a test that decodes its output with `apache-avro`
//! against its `.avsc`, so the two cannot drift apart.

/// The Confluent wire format: magic byte 0, the schema id as big-endian u32, the Avro datum.
pub fn wire_header(buf: &mut Vec<u8>, schema_id: u32) {
    buf.push(0);
    buf.extend_from_slice(&schema_id.to_be_bytes());
}

/// Splits a Confluent-framed value into schema id and Avro datum, checking lengths first.
pub fn split_wire(bytes: &[u8]) -> Option<(u32, &[u8])> {
    if bytes.len() < 5 || bytes[0] != 0 {
        return None;
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Some((id, &bytes[5..]))
}

pub struct AvroWriter<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> AvroWriter<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        AvroWriter { buf }
    }

    pub fn long(&mut self, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            self.buf.push((z as u8) | 0x80);
            z >>= 7;
        }
        self.buf.push(z as u8);
    }

    pub fn int(&mut self, v: i32) {
        self.long(i64::from(v));
    }

    pub fn string(&mut self, s: &str) {
        self.long(s.len() as i64);
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// A `["null", "string"]` union.
    pub fn opt_string(&mut self, s: Option<&str>) {
        match s {
            None => self.long(0),
            Some(s) => {
                self.long(1);
                self.string(s);
            }
        }
    }

    /// A `["null", long]` union (timestamps included).
    pub fn opt_long(&mut self, v: Option<i64>) {
        match v {
            None => self.long(0),
            Some(v) => {
                self.long(1);
                self.long(v);
            }
        }
    }

    /// An enum, by the index of its symbol in the schema.
    pub fn enum_index(&mut self, index: usize) {
        self.long(index as i64);
    }

    /// A map of strings, as one block.
    pub fn string_map<'s>(&mut self, entries: impl ExactSizeIterator<Item = (&'s str, &'s str)>) {
        if entries.len() > 0 {
            self.long(entries.len() as i64);
            for (k, v) in entries {
                self.string(k);
                self.string(v);
            }
        }
        self.long(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_varints_match_the_spec() {
        for (v, want) in [
            (0i64, vec![0u8]),
            (-1, vec![1]),
            (1, vec![2]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 1]),
        ] {
            let mut buf = Vec::new();
            AvroWriter::new(&mut buf).long(v);
            assert_eq!(buf, want, "{v}");
        }
    }

    #[test]
    fn wire_format_round_trip() {
        let mut buf = Vec::new();
        wire_header(&mut buf, 42);
        buf.extend_from_slice(b"xy");
        assert_eq!(split_wire(&buf), Some((42, &b"xy"[..])));
        assert_eq!(split_wire(&[0, 0, 0]), None);
        assert_eq!(split_wire(&[1, 0, 0, 0, 1]), None);
    }
}
