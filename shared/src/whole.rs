//! JSON numbers that JSON Schema calls integers. A schema's `integer` is any number without a
//! fractional part, so `7.0` is as valid as `7`; serde's `u32` refuses the first. Request fields
//! that are whole numbers read through these, so a client whose encoder writes every number as a
//! float is not refused for it, and `7.5` or `-1` still are.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A whole number of type `T` from `7` or `7.0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Whole<T>(T);

/// `value` as an `i64`, if it is a whole number within `i64`'s range.
fn whole(value: f64) -> Option<i64> {
    // 2^63 is exact as an f64; every f64 below it and at or above -2^63 fits an i64.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    #[allow(
        clippy::cast_possible_truncation,
        reason = "whole and within i64's range, checked first"
    )]
    (value.fract() == 0.0 && (-LIMIT..LIMIT).contains(&value)).then_some(value as i64)
}

impl<'de, T: TryFrom<u64> + TryFrom<i64>> Deserialize<'de> for Whole<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WholeVisitor<T>(PhantomData<T>);

        impl<T: TryFrom<u64> + TryFrom<i64>> Visitor<'_> for WholeVisitor<T> {
            type Value = Whole<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a whole number that fits {}", std::any::type_name::<T>())
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Whole<T>, E> {
                T::try_from(value)
                    .map(Whole)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Whole<T>, E> {
                T::try_from(value)
                    .map(Whole)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Whole<T>, E> {
                whole(value)
                    .and_then(|value| T::try_from(value).ok())
                    .map(Whole)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Float(value), &self))
            }
        }

        deserializer.deserialize_any(WholeVisitor(PhantomData))
    }
}

/// For `#[serde(deserialize_with = "keygate_shared::whole::u32")]`.
pub fn u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    Whole::deserialize(deserializer).map(|Whole(value)| value)
}

/// For `#[serde(deserialize_with = "keygate_shared::whole::i64")]`.
pub fn i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    Whole::deserialize(deserializer).map(|Whole(value)| value)
}

/// For `#[serde(default, deserialize_with = "keygate_shared::whole::option_u32")]`.
pub fn option_u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    Option::<Whole<u32>>::deserialize(deserializer).map(|value| value.map(|Whole(value)| value))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Fields {
        #[serde(deserialize_with = "super::u32")]
        count: u32,
        #[serde(default, deserialize_with = "super::option_u32")]
        days: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    struct Big {
        #[serde(deserialize_with = "super::i64")]
        at: i64,
    }

    fn read(json: &str) -> Result<Fields, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn whole_numbers_read_in_either_spelling_and_nothing_else_does() {
        let fields = read(r#"{"count": 7.0, "days": 30}"#).unwrap();
        assert_eq!((fields.count, fields.days), (7, Some(30)));
        let fields = read(r#"{"count": 4294967295, "days": null}"#).unwrap();
        assert_eq!((fields.count, fields.days), (u32::MAX, None));
        assert_eq!(read(r#"{"count": 1}"#).unwrap().days, None);
        let big: Big = serde_json::from_str(r#"{"at": -9007199254740992.0}"#).unwrap();
        assert_eq!(big.at, -9_007_199_254_740_992);
        assert!(serde_json::from_str::<Big>(r#"{"at": 9.3e18}"#).is_err());
        for refused in [
            r#"{"count": 7.5}"#,
            r#"{"count": -1}"#,
            r#"{"count": -1.0}"#,
            r#"{"count": 4294967296}"#,
            r#"{"count": 1e10}"#,
            r#"{"count": "7"}"#,
            r#"{"count": 1, "days": 2.5}"#,
        ] {
            assert!(read(refused).is_err(), "{refused}");
        }
    }
}
