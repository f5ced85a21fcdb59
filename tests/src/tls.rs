//! Clients the fleet's own tools never make, for the tests of what the
//! coordinator refuses.

use std::sync::Arc;

use recfleet_certs::Role;
use recfleet_testkit::Pki;

/// A QUIC client that trusts the fleet's CA and speaks its protocol but
/// presents no certificate at all.
pub fn client_without_certificate(pki: &Pki) -> quinn::Endpoint {
    let material = pki.issue(Role::Operator, "x").unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for ca in &material.ca {
        roots.add(ca.clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(recfleet_certs::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![recfleet_protocol::version::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config).unwrap();
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    client
}
