//! What an S3 server (or the network to it) said, told so that whoever
//! runs the CI can act on it: which endpoint did not answer and the
//! variable that named it, which credentials were refused, which bucket
//! is missing. All of them are EIO to the view; only a missing object is
//! ENOENT, and that is decided where the 404 arrives, not here.

use object_store::client::{HttpError, HttpErrorKind};

use super::{Bucket, S3Bucket};
use crate::error::Error;

impl S3Bucket {
    /// `e`, from operation `op` (GET, PUT, …) on `key`.
    pub(super) fn error(&self, key: &str, op: &str, e: object_store::Error) -> Error {
        let text = chain(&e);
        let code = s3_code(&text).map_or(String::new(), |c| format!(" ({c})"));
        let (endpoint, bucket) = (&self.endpoint, &self.bucket);
        let message = if text.contains("NoSuchBucket") {
            format!(
                "there is no bucket {bucket:?} at {endpoint}: create it (an S3 client's `mb`, \
                 or `radosgw-admin bucket create`), or fix the bucket name in --remote"
            )
        } else if text.contains("RequestTimeTooSkewed") {
            format!(
                "{op} refused{code} by {endpoint}: this host's clock and the server's differ by \
                 more than S3 allows (15 minutes): set the clock (NTP)"
            )
        } else if matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ) || [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
        ]
        .iter()
        .any(|c| text.contains(c))
        {
            format!(
                "{op} refused{code} by {endpoint}: check AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), and that this key may use \
                 bucket {bucket:?}"
            )
        } else if let Some((kind, cause)) = no_answer(&e) {
            let what = match kind {
                HttpErrorKind::Connect => "cannot connect to",
                HttpErrorKind::Timeout => "no answer in time from",
                _ => "lost the connection to",
            };
            format!(
                "{op}: {what} {endpoint} ({cause}): check that the object store is up and that \
                 AWS_ENDPOINT_URL names it"
            )
        } else {
            format!("{op} failed{code}: {text}")
        };
        Error::Remote {
            url: self.url(key),
            message,
            errno: libc::EIO,
        }
    }
}

/// `e` and its causes, each said once (a cause's text is often already
/// part of the error's own).
pub(super) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text = format!("{text}: {s}");
        }
        cause = c.source();
    }
    text
}

/// The HTTP client's error among `e`'s causes, when the request got no
/// answer, and the innermost cause ("Connection refused (os error 111)").
fn no_answer(e: &(dyn std::error::Error + 'static)) -> Option<(HttpErrorKind, String)> {
    let mut kind = None;
    let mut last: &dyn std::error::Error = e;
    while let Some(c) = last.source() {
        kind = kind.or(c.downcast_ref::<HttpError>().map(HttpError::kind));
        last = c;
    }
    Some((kind?, last.to_string()))
}

/// The S3 error code in a response body (`<Code>NoSuchKey</Code>`).
fn s3_code(text: &str) -> Option<&str> {
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(&text[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::super::{S3Bucket, S3Config};

    /// An error whose text is a server's answer (object_store keeps the
    /// body in the error's text), as a 4xx of the server would give it.
    fn answer(body: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: format!("Server returned non-2xx status code: 403 Forbidden: {body}").into(),
        }
    }

    /// Each answer an admin can act on is told with what to do; none sends
    /// the admin to the credentials when the clock or the bucket is wrong.
    #[test]
    fn server_answers_say_what_to_do() {
        let config = S3Config {
            endpoint: Some("http://127.0.0.1:7480".into()),
            ..S3Config::default()
        };
        let b = S3Bucket::new("ci-cache", "opnfv", config).unwrap();
        for (code, want) in [
            (
                "NoSuchBucket",
                "there is no bucket \"ci-cache\" at endpoint http://127.0.0.1:7480",
            ),
            ("RequestTimeTooSkewed", "set the clock (NTP)"),
            (
                "SignatureDoesNotMatch",
                "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            ),
            (
                "InvalidAccessKeyId",
                "(InvalidAccessKeyId) by endpoint http://127.0.0.1:7480",
            ),
            ("InternalError", "GET failed (InternalError): "),
        ] {
            let body = format!("<Error><Code>{code}</Code><Message></Message></Error>");
            let e = b.error("packs/a.pack", "GET", answer(&body));
            let msg = e.to_string();
            assert!(msg.contains(want), "{code}: {msg}");
            assert!(
                msg.starts_with("remote s3://ci-cache/opnfv/packs/a.pack: "),
                "{msg}"
            );
            assert_eq!(e.errno(), libc::EIO, "{code}");
        }
    }
}
