//! One source of truth for every enum that has a SQL spelling and a small
//! code stored in shared memory: [`sql_enum!`] declares the variants with
//! their code and text once, and derives `ALL`, `as_str`, `parse`, `code`
//! and `from_code` from that list.

/// Declares an enum whose every variant has a stable `u8` code (stored in
/// shared memory) and a SQL spelling (shown to users and accepted from
/// them):
///
/// ```
/// governance::sql_enum! {
///     /// What happened.
///     pub enum Outcome {
///         Kept = 1 => "kept",
///         Dropped = 2 => "dropped",
///     }
/// }
/// assert_eq!(Outcome::parse("dropped"), Some(Outcome::Dropped));
/// assert_eq!(Outcome::from_code(1).map(Outcome::as_str), Some("kept"));
/// ```
#[macro_export]
macro_rules! sql_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The SQL spelling.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }

            /// The stable code stored in shared memory.
            pub const fn code(self) -> u8 {
                match self {
                    $( $name::$variant => $code, )+
                }
            }

            /// The variant stored as `code`.
            pub fn from_code(code: u8) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.code() == code)
            }

            /// Parses an already trimmed, lower-cased spelling.
            pub fn parse(text: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text)
            }

            /// Where the variant sits in [`Self::ALL`] (for per-variant
            /// counter arrays).
            pub fn index(self) -> usize {
                Self::ALL.iter().position(|v| *v == self).unwrap_or(0)
            }
        }
    };
}

/// Whether the codes and the spellings of `all` are each distinct (a
/// copy-pasted code or spelling would make two variants indistinguishable
/// once stored or printed).
pub fn distinct<T: Copy>(
    all: &[T],
    code: impl Fn(T) -> u8,
    text: impl Fn(T) -> &'static str,
) -> bool {
    let mut codes: Vec<u8> = all.iter().map(|v| code(*v)).collect();
    let mut texts: Vec<&str> = all.iter().map(|v| text(*v)).collect();
    codes.sort_unstable();
    codes.dedup();
    texts.sort_unstable();
    texts.dedup();
    codes.len() == all.len() && texts.len() == all.len()
}

#[cfg(test)]
mod tests {
    use super::distinct;

    crate::sql_enum! {
        enum Sample {
            A = 1 => "a",
            B = 2 => "b",
            C = 3 => "a",
        }
    }

    #[test]
    fn a_repeated_spelling_is_caught() {
        assert!(!distinct(Sample::ALL, Sample::code, Sample::as_str));
        assert!(distinct(&Sample::ALL[..2], Sample::code, Sample::as_str));
    }

    #[test]
    fn lookups_follow_the_declaration() {
        assert_eq!(Sample::from_code(2), Some(Sample::B));
        assert_eq!(Sample::from_code(0), None);
        assert_eq!(Sample::parse("b"), Some(Sample::B));
        assert_eq!(Sample::parse("B"), None);
        assert_eq!(Sample::C.index(), 2);
    }
}
