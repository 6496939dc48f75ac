//! Where an S3 bucket is served, who asks, and how patiently: the client
//! an [`super::S3Bucket`] sends its requests through.

use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use super::message::chain;
use crate::error::{Error, Result};

/// Where an S3 bucket is served and who asks: what
/// [`super::S3Bucket::from_env`] reads. None: object_store's own default
/// (for credentials: a web identity, container or instance role).
#[derive(Clone, Default)]
pub struct S3Config {
    /// `http://HOST:PORT` or `https://HOST`; None: AWS itself.
    pub endpoint: Option<String>,
    /// None: us-east-1.
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
}

impl S3Config {
    /// `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`), `AWS_REGION` (or
    /// `AWS_DEFAULT_REGION`), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`; an empty variable counts as unset.
    pub fn from_env() -> S3Config {
        let env = |vars: &[&str]| {
            vars.iter()
                .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        };
        S3Config {
            endpoint: env(&["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]),
            region: env(&["AWS_REGION", "AWS_DEFAULT_REGION"]),
            access_key_id: env(&["AWS_ACCESS_KEY_ID"]),
            secret_access_key: env(&["AWS_SECRET_ACCESS_KEY"]),
            session_token: env(&["AWS_SESSION_TOKEN"]),
        }
    }
}

/// Bounded retries: 5xx, 429, dropped connections and timeouts are retried
/// up to 5 times, 0.1 s doubling to at most 4 s apart (about 3 s of waiting
/// when nothing answers), never past 30 s from the first try: an endpoint
/// that refuses or does not exist fails in seconds, not minutes (the
/// default, 10 retries up to 15 s apart, takes about a minute).
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(4),
            base: 2.0,
        },
        max_retries: 5,
        retry_timeout: Duration::from_secs(30),
    }
}

/// The client for `bucket` that `config` describes, on top of `builder`
/// (which may hold more settings), and where it sends requests, for
/// messages. With an endpoint: path-style requests (`ENDPOINT/BUCKET/KEY`),
/// as radosgw and MinIO expect, and `http://` allowed.
pub(super) fn client(
    bucket: &str,
    url: &str,
    config: S3Config,
    builder: AmazonS3Builder,
) -> Result<(AmazonS3, String)> {
    let region = config.region.unwrap_or_else(|| "us-east-1".into());
    // A connection gets 3 s, a request (its body included: a 16 MiB part
    // over a slow link) 60 s.
    let options = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(60));
    let mut builder = builder
        .with_bucket_name(bucket)
        .with_region(&region)
        .with_retry(retry_config());
    if let Some(v) = config.access_key_id {
        builder = builder.with_access_key_id(v);
    }
    if let Some(v) = config.secret_access_key {
        builder = builder.with_secret_access_key(v);
    }
    if let Some(v) = config.session_token {
        builder = builder.with_token(v);
    }
    let endpoint = match config.endpoint {
        Some(ep) => {
            let http = ep.starts_with("http://");
            if !http && !ep.starts_with("https://") {
                return Err(Error::Usage(format!(
                    "AWS_ENDPOINT_URL={ep:?}: give the object store's URL, http://HOST:PORT or https://HOST"
                )));
            }
            builder = builder
                .with_endpoint(&ep)
                .with_virtual_hosted_style_request(false)
                .with_client_options(options.with_allow_http(http));
            format!("endpoint {ep} (AWS_ENDPOINT_URL)")
        }
        None => {
            builder = builder.with_client_options(options);
            format!("AWS S3 in {region} (no AWS_ENDPOINT_URL set)")
        }
    };
    let store = builder.build().map_err(|e| Error::Remote {
        url: url.to_owned(),
        message: format!("cannot set up the S3 client: {}", chain(&e)),
        errno: libc::EIO,
    })?;
    Ok((store, endpoint))
}
