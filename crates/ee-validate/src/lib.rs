//! ee-validate
