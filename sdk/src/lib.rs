//! haplane-sdk: a client that follows the plane's master (filled in by the SDK issue).
