//! Reading the `Cookie` headers of a request: shared by the dashboard's sessions
//! (`transport/ui/session.rs`) and a port's own listener (`task/ports/public.rs`), which
//! must agree on how a browser's cookies are split.

use hyper::HeaderMap;
use hyper::header;

/// Every `name=value` pair of the request's `Cookie` headers, trimmed, empty ones left out.
pub fn pairs(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
}

/// The value of the first cookie called `name`, if the request has one.
pub fn value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    pairs(headers)
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn cookies_are_split_across_headers_and_pairs() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; b=2;;"));
        headers.append(header::COOKIE, HeaderValue::from_static(" c=3"));
        assert_eq!(pairs(&headers).collect::<Vec<_>>(), ["a=1", "b=2", "c=3"]);
        assert_eq!(value(&headers, "c"), Some("3"));
        assert_eq!(value(&headers, "d"), None);
    }
}
