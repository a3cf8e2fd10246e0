//! Cross-crate integration tests of the ee workspace live in `tests/`; this
//! library is empty on purpose (a package needs a target).
