//! The checks shared by `Valid<T>` and `ValidateLayer`: parse, depth,
//! schema, metrics.

use bytes::Bytes;
use ee_serialize::{BodyError, JsonError};
use http::HeaderMap;
use jsonschema::Validator;
use serde_json::Value;

use crate::error::{MAX_VIOLATIONS, Part, ValidateError, Violation};
use crate::metrics::Rejecter;

/// Refuses a body whose `Content-Type` is not JSON (415).
pub(crate) fn content_type(
    headers: &HeaderMap,
    rejecter: Rejecter<'_>,
) -> Result<(), ValidateError> {
    ee_serialize::require_json(headers).map_err(|e| {
        rejecter.reject("content-type");
        e.into()
    })
}

/// What an error reading the body means (413 past a limit, 400 otherwise),
/// counted as `size` or `body`.
pub(crate) fn body_error(
    error: &(dyn std::error::Error + 'static),
    rejecter: Rejecter<'_>,
) -> ValidateError {
    let error = BodyError::from_read_error(error);
    let too_large = matches!(error, BodyError::TooLarge { .. } | BodyError::LimitExceeded);
    rejecter.reject(if too_large { "size" } else { "body" });
    error.into()
}

/// Parses a JSON body: 400 (`ee_serialize`'s problem) when it is not JSON.
pub(crate) fn parse(bytes: &Bytes, rejecter: Rejecter<'_>) -> Result<Value, ValidateError> {
    serde_json::from_slice(bytes).map_err(|e| {
        rejecter.reject("syntax");
        JsonError::from(e).into()
    })
}

/// Refuses a document deeper than `max` (serde_json's parser already stops
/// at 128, so only a lower limit walks the document).
pub(crate) fn depth(
    value: &Value,
    max: usize,
    rejecter: Rejecter<'_>,
) -> Result<(), ValidateError> {
    if max >= 128 {
        return Ok(());
    }
    let mut stack: Vec<(&Value, usize)> = vec![(value, 1)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if d > max {
            rejecter.reject("depth");
            return Err(ValidateError::TooDeep { limit: max });
        }
        stack.extend(children.map(|c| (c, d + 1)));
    }
    Ok(())
}

/// Checks `value` against `validator`: every violation, in one list.
pub(crate) fn violations(
    validator: &Validator,
    value: &Value,
    part: Part,
) -> (Vec<Violation>, usize) {
    // The valid path (the common one) stops at nothing but the verdict.
    if validator.is_valid(value) {
        return (Vec::new(), 0);
    }
    let mut total = 0;
    let mut list = Vec::new();
    for error in validator.iter_errors(value) {
        total += 1;
        if list.len() < MAX_VIOLATIONS {
            list.push(Violation {
                part,
                pointer: error.instance_path().as_str().to_owned(),
                keyword: error.kind().keyword().to_owned(),
                message: truncated(error.to_string()),
            });
        }
    }
    (list, total)
}

/// The 422 for `found` violations (counted in metrics by keyword, at most
/// [`MAX_VIOLATIONS`] listed), or `Ok` when there are none.
pub(crate) fn verdict(
    found: (Vec<Violation>, usize),
    rejecter: Rejecter<'_>,
) -> Result<(), ValidateError> {
    let (mut violations, total) = found;
    if violations.is_empty() {
        return Ok(());
    }
    violations.truncate(MAX_VIOLATIONS);
    for v in &violations {
        rejecter.reject(&v.keyword);
    }
    Err(ValidateError::Invalid { violations, total })
}

/// Messages quote the offending value; a huge value is cut, so a response
/// stays small whatever the request held.
fn truncated(mut message: String) -> String {
    const MAX: usize = 300;
    if message.len() > MAX {
        let mut end = MAX;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}
