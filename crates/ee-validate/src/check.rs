//! The checks shared by `Valid<T>` and `ValidateLayer`: parse, depth,
//! schema, metrics.

use bytes::Bytes;
use ee_core::Problem;
use ee_serialize::JsonError;
use jsonschema::Validator;
use serde_json::Value;

use crate::error::{MAX_VIOLATIONS, Part, Violation, too_deep_problem, violations_problem};
use crate::metrics::reject;

/// Parses a JSON body: 400 (`ee_serialize`'s problem) when it is not JSON.
pub(crate) fn parse(bytes: &Bytes, route: &str) -> Result<Value, Box<Problem>> {
    serde_json::from_slice(bytes).map_err(|e| {
        reject(route, "syntax");
        Box::new(Problem::from(&JsonError::from(e)))
    })
}

/// Refuses a document deeper than `max` (serde_json's parser already stops
/// at 128, so only a lower limit walks the document).
pub(crate) fn depth(value: &Value, max: usize, route: &str) -> Result<(), Box<Problem>> {
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
            reject(route, "depth");
            return Err(Box::new(too_deep_problem(max)));
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

/// The 422 problem for `found` violations (counted in metrics by keyword),
/// or `Ok` when there are none.
pub(crate) fn verdict(found: (Vec<Violation>, usize), route: &str) -> Result<(), Box<Problem>> {
    let (list, total) = found;
    if list.is_empty() {
        return Ok(());
    }
    for v in &list {
        reject(route, &v.keyword);
    }
    Err(Box::new(violations_problem(&list, total)))
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
