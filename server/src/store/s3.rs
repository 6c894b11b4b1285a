//! S3 store (filled in by the S3 issue).
