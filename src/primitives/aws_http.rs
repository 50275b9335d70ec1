//! The HTTP client every AWS SDK client here uses: HTTPS with rustls on
//! ring, so no cmake or assembler is needed to build it, and plain
//! `http://` still works for an `endpoint_url` in tests.

use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
// The same type every SDK crate re-exports.
use aws_sdk_ssm::config::SharedHttpClient;

pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}
