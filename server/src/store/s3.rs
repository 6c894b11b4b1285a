//! S3 store (AWS or any S3-compatible server): create-if-absent with `If-None-Match: *`, atomic
//! overwrite by PutObject, paginated listing; every S3 failure is classified in one function.

use super::{Key, PutMode, Store, StoreError};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use std::time::Duration;

/// Where an S3 store is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Options {
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// An S3-compatible endpoint; `None`: AWS (or `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible servers need.
    pub path_style: bool,
    /// Static access key and secret instead of the AWS credential chain (for S3-compatible test
    /// servers); never logged.
    pub static_credentials: Option<(String, String)>,
}

impl S3Options {
    /// Parses `s3://BUCKET/PREFIX`.
    pub fn from_location(location: &str) -> Result<Self, StoreError> {
        let invalid = |reason: &str| StoreError::Generic {
            message: format!("--persistence-location {location:?}: {reason}"),
        };
        let rest = location
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("must look like s3://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !bucket_ok {
            return Err(invalid(
                "the bucket name must be 3 to 63 characters of a-z, 0-9, '-' and '.'",
            ));
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            Key::parse(prefix).map_err(|err| invalid(&format!("bad prefix: {err}")))?;
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            endpoint: None,
            path_style: true,
            static_credentials: None,
        })
    }
}

/// A store in one bucket under one prefix.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    options: S3Options,
}

/// How many times a create that met a concurrent conditional write (409) is tried.
const CONFLICT_ATTEMPTS: u32 = 5;

/// Maps an S3 answer (HTTP status if any, error code, message) about `key` to a store condition.
pub fn classify(status: Option<u16>, code: Option<&str>, message: &str, key: &str) -> StoreError {
    let key = key.to_owned();
    let detail = format!("{key}: {} {}", code.unwrap_or("no error code"), message);
    match (status, code) {
        (_, Some("NoSuchKey" | "NotFound")) | (Some(404), _) => StoreError::NotFound { key },
        (_, Some("PreconditionFailed")) | (Some(412), _) => StoreError::AlreadyExists { key },
        (_, Some("ConditionalRequestConflict")) | (Some(409), _) => StoreError::Precondition {
            key,
            message: "a concurrent conditional write is in progress".to_owned(),
        },
        (_, Some("NoSuchBucket")) => StoreError::Generic {
            message: format!("{detail} (the bucket does not exist)"),
        },
        (Some(401 | 403), _) => StoreError::Generic {
            message: format!("{detail} (access denied: check the credentials and bucket policy)"),
        },
        (Some(501), _) => StoreError::NotSupported { message: detail },
        (Some(429 | 500..=599), _) | (None, _) => StoreError::Unavailable { message: detail },
        (Some(_), _) => StoreError::Generic { message: detail },
    }
}

fn classify_sdk<E: ProvideErrorMetadata, R>(
    err: &SdkError<E, R>,
    status: Option<u16>,
    key: &str,
) -> StoreError {
    match err {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            classify(status, inner.code(), inner.message().unwrap_or(""), key)
        }
        // Timeouts, connection failures, unreadable answers: nothing the store decided.
        other => classify(status, None, &other.to_string(), key),
    }
}

fn status_of<E>(err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    err.raw_response()
        .map(|response| response.status().as_u16())
}

impl S3Store {
    /// A client for `options`, with credentials and region from the AWS chain (region defaults
    /// to us-east-1 when none is configured).
    pub async fn connect(options: S3Options) -> Result<Self, StoreError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some((access_key, secret)) = &options.static_credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                access_key.clone(),
                secret.clone(),
                None,
                None,
                "haplane-static",
            ));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(options.path_style)
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .build(),
            );
        if shared.region().is_none() {
            builder = builder.region(aws_sdk_s3::config::Region::new("us-east-1"));
        }
        if let Some(endpoint) = &options.endpoint {
            builder = builder.endpoint_url(endpoint.clone());
        }
        Ok(Self {
            client: Client::from_conf(builder.build()),
            options,
        })
    }

    fn object_key(&self, key: &str) -> String {
        if self.options.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.options.prefix)
        }
    }

    /// Refuses a server that does not enforce `If-None-Match: *`: creates a probe object twice
    /// and expects the second create to fail.
    pub async fn probe_conditional_writes(&self) -> Result<(), StoreError> {
        let key = Key::parse(&format!("probe/{:016x}.json", rand::random::<u64>()))?;
        let body = Bytes::from_static(b"{}");
        self.put(&key, body.clone(), PutMode::Create).await?;
        let second = self.put(&key, body, PutMode::Create).await;
        let _ = self.delete(&key).await;
        match second {
            Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Ok(()) => Err(StoreError::NotSupported {
                message: format!(
                    "{} does not enforce If-None-Match: * (a second create of {key} succeeded); \
                     create-if-absent, and so mutual exclusion, is not safe on it",
                    self.describe()
                ),
            }),
            Err(other) => Err(other),
        }
    }
}

#[async_trait]
impl Store for S3Store {
    async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
        let object_key = self.object_key(key.as_str());
        let response = self
            .client
            .get_object()
            .bucket(&self.options.bucket)
            .key(&object_key)
            .send()
            .await
            .map_err(|err| classify_sdk(&err, status_of(&err), key.as_str()))?;
        let body = response
            .body
            .collect()
            .await
            .map_err(|err| StoreError::Unavailable {
                message: format!("{key}: body not received: {err}"),
            })?;
        Ok(body.into_bytes())
    }

    async fn put(&self, key: &Key, body: Bytes, mode: PutMode) -> Result<(), StoreError> {
        let object_key = self.object_key(key.as_str());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .client
                .put_object()
                .bucket(&self.options.bucket)
                .key(&object_key)
                .content_type("application/json")
                .body(ByteStream::from(body.clone()));
            if mode == PutMode::Create {
                request = request.if_none_match("*");
            }
            match request.send().await {
                Ok(_) => return Ok(()),
                Err(err) => match classify_sdk(&err, status_of(&err), key.as_str()) {
                    StoreError::Precondition { .. } if attempt < CONFLICT_ATTEMPTS => {
                        tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                    }
                    other => return Err(other),
                },
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Key>, StoreError> {
        let object_prefix = self.object_key(prefix);
        let strip = if self.options.prefix.is_empty() {
            0
        } else {
            self.options.prefix.len() + 1
        };
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.options.bucket)
            .prefix(&object_prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| classify_sdk(&err, status_of(&err), prefix))?;
            for object in page.contents() {
                if let Some(name) = object.key().and_then(|k| k.get(strip..))
                    && let Ok(key) = Key::parse(name)
                {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        let object_key = self.object_key(key.as_str());
        // S3 deletes are idempotent; ask first so that a missing key is reported as on disk.
        self.client
            .head_object()
            .bucket(&self.options.bucket)
            .key(&object_key)
            .send()
            .await
            .map_err(|err| classify_sdk(&err, status_of(&err), key.as_str()))?;
        self.client
            .delete_object()
            .bucket(&self.options.bucket)
            .key(&object_key)
            .send()
            .await
            .map_err(|err| classify_sdk(&err, status_of(&err), key.as_str()))?;
        Ok(())
    }

    fn describe(&self) -> String {
        let at = self.options.endpoint.as_deref().unwrap_or("AWS");
        if self.options.prefix.is_empty() {
            format!("s3://{} at {at}", self.options.bucket)
        } else {
            format!(
                "s3://{}/{} at {at}",
                self.options.bucket, self.options.prefix
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(err: StoreError) -> &'static str {
        match err {
            StoreError::NotFound { .. } => "not_found",
            StoreError::AlreadyExists { .. } => "already_exists",
            StoreError::Precondition { .. } => "precondition",
            StoreError::Unavailable { .. } => "unavailable",
            StoreError::NotSupported { .. } => "not_supported",
            _ => "generic",
        }
    }

    #[test]
    fn classify_maps_each_s3_answer() {
        let cases = [
            (Some(404), Some("NoSuchKey"), "not_found"),
            (Some(404), None, "not_found"),
            (Some(412), Some("PreconditionFailed"), "already_exists"),
            (
                Some(409),
                Some("ConditionalRequestConflict"),
                "precondition",
            ),
            (Some(404), Some("NoSuchBucket"), "not_found"),
            (Some(400), Some("NoSuchBucket"), "generic"),
            (Some(403), Some("AccessDenied"), "generic"),
            (Some(401), None, "generic"),
            (Some(501), Some("NotImplemented"), "not_supported"),
            (Some(503), Some("SlowDown"), "unavailable"),
            (Some(500), Some("InternalError"), "unavailable"),
            (Some(429), None, "unavailable"),
            (None, None, "unavailable"),
            (Some(400), Some("InvalidArgument"), "generic"),
        ];
        for (status, code, expected) in cases {
            assert_eq!(
                kind(classify(status, code, "m", "k")),
                expected,
                "{status:?} {code:?}"
            );
        }
    }

    #[test]
    fn locations_are_parsed_and_validated() {
        let options = S3Options::from_location("s3://my-bucket/haplane/prod/").unwrap();
        assert_eq!(
            (options.bucket.as_str(), options.prefix.as_str()),
            ("my-bucket", "haplane/prod")
        );
        assert_eq!(S3Options::from_location("s3://bucket").unwrap().prefix, "");
        for bad in [
            "s3://",
            "s3://B",
            "gs://bucket/x",
            "s3://bucket/../x",
            "s3://-bucket/x",
        ] {
            assert!(S3Options::from_location(bad).is_err(), "{bad}");
        }
    }
}
