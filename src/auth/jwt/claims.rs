//! Reading claims by a dotted name: `kubernetes.io.namespace` reaches `namespace` inside the
//! `kubernetes.io` claim (a name that itself holds a dot), `realm_access.roles` a nested list.

use serde_json::Value;

/// The value at `path`, trying the longest claim names first at each level.
pub fn at<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(claims);
    }
    let object = claims.as_object()?;
    let mut end = path.len();
    loop {
        let (head, rest) = (&path[..end], path.get(end + 1..).unwrap_or(""));
        if let Some(v) = object.get(head) {
            if let Some(found) = at(v, rest) {
                return Some(found);
            }
        }
        end = path[..end].rfind('.')?;
    }
}

/// A claim as text: a string, or a number or boolean written out.
pub fn text(claims: &Value, path: &str) -> Option<String> {
    match at(claims, path)? {
        Value::String(s) => Some(s.clone()),
        v @ (Value::Number(_) | Value::Bool(_)) => Some(v.to_string()),
        _ => None,
    }
}

/// A claim as a list: an array of strings, or one string of space- or comma-separated
/// entries (OAuth's `scope`).
pub fn list(claims: &Value, path: &str) -> Option<Vec<String>> {
    match at(claims, path)? {
        Value::String(s) => Some(
            s.split([' ', ','])
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_names_reach_into_claims_that_hold_dots() {
        let c = serde_json::json!({
            "sub": "system:serviceaccount:shop:agent",
            "kubernetes.io": {"namespace": "shop", "serviceaccount": {"name": "agent"}},
            "scope": "openid event:write",
            "realm_access": {"roles": ["apm", "event:write"]},
            "n": 5,
        });
        assert_eq!(text(&c, "kubernetes.io.namespace").as_deref(), Some("shop"));
        assert_eq!(
            text(&c, "kubernetes.io.serviceaccount.name").as_deref(),
            Some("agent")
        );
        assert_eq!(text(&c, "n").as_deref(), Some("5"));
        assert_eq!(list(&c, "scope").unwrap(), ["openid", "event:write"]);
        assert_eq!(
            list(&c, "realm_access.roles").unwrap(),
            ["apm", "event:write"]
        );
        assert!(text(&c, "kubernetes.io").is_none(), "an object is not text");
        assert!(at(&c, "nope.x").is_none());
    }
}
