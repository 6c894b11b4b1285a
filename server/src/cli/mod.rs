//! The operator's command-line client (`haplane ha …`), built on the SDK.

pub mod ha;
