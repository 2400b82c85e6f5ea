//! The protobuf wire format, walked field by field over a borrowed message: no schema, no
//! allocation. The OTLP reader descends only into the fields it needs and skips the rest,
//! as the generated decoders APM Server uses skip unknown fields.

use super::OtlpError;

/// One field's value, as its wire type carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64,
    Fixed32,
    /// Length-delimited: a string, bytes or an embedded message.
    Bytes(&'a [u8]),
    /// A (deprecated) group, skipped whole: in no OTLP message, but decoders skip one in an
    /// unknown field, so the walker must too.
    Group,
}

impl<'a> Value<'a> {
    /// The bytes of a length-delimited field; any other wire type for a field the schema
    /// declares length-delimited is malformed (APM Server's decoder refuses it too).
    pub fn bytes(self) -> Result<&'a [u8], OtlpError> {
        match self {
            Value::Bytes(b) => Ok(b),
            _ => Err(OtlpError::Malformed),
        }
    }

    /// A field the schema declares as a varint (bool, int64, enum).
    pub fn varint(self) -> Result<(), OtlpError> {
        match self {
            Value::Varint(_) => Ok(()),
            _ => Err(OtlpError::Malformed),
        }
    }

    /// A field the schema declares as 64-bit fixed (double).
    pub fn fixed64(self) -> Result<(), OtlpError> {
        match self {
            Value::Fixed64 => Ok(()),
            _ => Err(OtlpError::Malformed),
        }
    }
}

/// Groups nested deeper are refused (prost's recursion limit).
const MAX_GROUP_DEPTH: u32 = 100;

/// The fields of one message, in order.
pub struct Fields<'a> {
    rest: &'a [u8],
}

pub fn fields(message: &[u8]) -> Fields<'_> {
    Fields { rest: message }
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, OtlpError> {
        let mut value = 0u64;
        for (i, &byte) in self.rest.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.rest = &self.rest[i + 1..];
                return Ok(value);
            }
        }
        Err(OtlpError::Malformed)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], OtlpError> {
        if n > self.rest.len() {
            return Err(OtlpError::Malformed);
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    fn next_field(&mut self) -> Result<(u32, Value<'a>), OtlpError> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| OtlpError::Malformed)?;
        if number == 0 {
            return Err(OtlpError::Malformed);
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed64
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| OtlpError::Malformed)?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed32
            }
            3 => {
                self.skip_group(number, 0)?;
                Value::Group
            }
            // An end of group outside one; 6 and 7 are no wire type.
            _ => return Err(OtlpError::Malformed),
        };
        Ok((number, value))
    }

    /// Skip a group's fields up to its end (the same field number), nested groups too.
    fn skip_group(&mut self, number: u32, depth: u32) -> Result<(), OtlpError> {
        if depth >= MAX_GROUP_DEPTH {
            return Err(OtlpError::Malformed);
        }
        loop {
            let key = self.varint()?;
            let inner = u32::try_from(key >> 3).map_err(|_| OtlpError::Malformed)?;
            match key & 7 {
                4 if inner == number => return Ok(()),
                3 => self.skip_group(inner, depth + 1)?,
                0 => {
                    self.varint()?;
                }
                1 => {
                    self.take(8)?;
                }
                2 => {
                    let len = usize::try_from(self.varint()?).map_err(|_| OtlpError::Malformed)?;
                    self.take(len)?;
                }
                5 => {
                    self.take(4)?;
                }
                _ => return Err(OtlpError::Malformed),
            }
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), OtlpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let field = self.next_field();
        if field.is_err() {
            // One error ends the walk.
            self.rest = &[];
        }
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_skipped_whole() {
        // 1: group { 2: varint 5, 3: group {} }, then 4: "x"
        let msg = [0x0b, 0x10, 5, 0x1b, 0x1c, 0x0c, 0x22, 1, b'x'];
        let got: Vec<_> = fields(&msg).collect::<Result<_, _>>().unwrap();
        assert_eq!(got, [(1, Value::Group), (4, Value::Bytes(b"x"))]);
        // A group ended by another field's end is malformed.
        assert!(fields(&[0x0b, 0x14]).next().unwrap().is_err());
    }

    #[test]
    fn fields_are_walked_in_order_and_truncation_is_malformed() {
        // 1: varint 150; 2: "hi"; 3: fixed64; 4: fixed32
        let msg = [
            0x08, 0x96, 0x01, 0x12, 2, b'h', b'i', 0x19, 0, 0, 0, 0, 0, 0, 0, 0, 0x25, 0, 0, 0, 0,
        ];
        let got: Vec<_> = fields(&msg).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            got,
            [
                (1, Value::Varint(150)),
                (2, Value::Bytes(b"hi")),
                (3, Value::Fixed64),
                (4, Value::Fixed32)
            ]
        );
        for cut in 1..msg.len() {
            let walked: Result<Vec<_>, _> = fields(&msg[..cut]).collect();
            let whole_fields = [3, 7, 16];
            assert_eq!(walked.is_ok(), whole_fields.contains(&cut), "cut at {cut}");
        }
        // Field 0, an unterminated group, an end of group alone, an overlong varint.
        assert!(fields(&[0x00, 0x01]).next().unwrap().is_err());
        assert!(fields(&[0x0b]).next().unwrap().is_err());
        assert!(fields(&[0x0c]).next().unwrap().is_err());
        assert!(
            fields(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
                .next()
                .unwrap()
                .is_err()
        );
    }
}
