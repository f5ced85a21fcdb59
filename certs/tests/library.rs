//! Library tests: CA files, issuance, identity parsing, and real rustls
//! handshakes over in-memory buffers with the configs this crate builds.

use std::any::Any;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use recfleet_certs::{
    client_config, describe, identity_from_certs, identity_from_der, server_config,
    write_cert_files, CertError, CertificateAuthority, Identity, IssueRequest, IssuedCert, Role,
    TlsMaterial,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConnection, Connection, ServerConnection};
use time::{Duration, OffsetDateTime};

const ALPN: &[&[u8]] = &[b"recfleet/1"];

fn id(role: Role, name: &str) -> Identity {
    Identity::new(role, name).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn material(ca: &CertificateAuthority, issued: &IssuedCert) -> TlsMaterial {
    ca.tls_material(issued).unwrap()
}

/// Moves all pending TLS records from one side to the other.
fn transfer(from: &mut Connection, to: &mut Connection) -> Result<bool, rustls::Error> {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    if buf.is_empty() {
        return Ok(false);
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
        to.process_new_packets()?;
    }
    Ok(true)
}

/// Runs a full handshake; returns the server side (to inspect the peer) or
/// the first error either side raised.
fn handshake(
    client: &TlsMaterial,
    server: &TlsMaterial,
    server_name: &str,
    client_alpn: &[&[u8]],
) -> Result<ServerConnection, rustls::Error> {
    let cc = client_config(client, client_alpn).unwrap();
    let sc = server_config(server, ALPN).unwrap();
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let mut c = Connection::Client(ClientConnection::new(Arc::new(cc), name)?);
    let mut s = Connection::Server(ServerConnection::new(Arc::new(sc))?);
    for _ in 0..20 {
        let a = transfer(&mut c, &mut s)?;
        let b = transfer(&mut s, &mut c)?;
        if !a && !b {
            break;
        }
    }
    assert!(
        !c.is_handshaking() && !s.is_handshaking(),
        "handshake stalled"
    );
    match s {
        Connection::Server(s) => Ok(s),
        Connection::Client(_) => unreachable!(),
    }
}

#[test]
fn init_writes_private_files_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    CertificateAuthority::init(&dir, false).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("ca-key.pem")), 0o600);
    let before = fs::read(dir.join("ca.pem")).unwrap();

    let err = CertificateAuthority::init(&dir, false).unwrap_err();
    assert!(matches!(err, CertError::AlreadyExists { .. }), "{err}");
    assert!(err.to_string().contains("ca.pem"), "{err}");
    assert!(err.to_string().contains("use --force"), "{err}");
    assert_eq!(fs::read(dir.join("ca.pem")).unwrap(), before);

    CertificateAuthority::init(&dir, true).unwrap();
    assert_ne!(fs::read(dir.join("ca.pem")).unwrap(), before);
    assert_eq!(mode(&dir.join("ca-key.pem")), 0o600);

    let info = describe(&fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    assert!(info.is_ca);
    assert_eq!(info.identity, None);
    assert!(info.subject.contains("CN=recfleet CA"), "{}", info.subject);
}

#[test]
fn loaded_ca_issues_certificates_that_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let created = CertificateAuthority::init(tmp.path(), false).unwrap();
    let ca = CertificateAuthority::load(tmp.path()).unwrap();
    assert_eq!(ca.cert_pem(), created.cert_pem());
    assert_eq!(ca.not_after(), created.not_after());

    let server = ca
        .issue_for_days(id(Role::Coordinator, "main"), vec![], 30)
        .unwrap();
    let client = created
        .issue_for_days(id(Role::Agent, "w1"), vec![], 30)
        .unwrap();
    handshake(
        &material(&ca, &client),
        &material(&ca, &server),
        "localhost",
        ALPN,
    )
    .unwrap();
}

#[test]
fn load_rejects_a_key_from_another_ca() {
    let tmp = tempfile::tempdir().unwrap();
    CertificateAuthority::init(tmp.path(), false).unwrap();
    let other = tempfile::tempdir().unwrap();
    CertificateAuthority::init(other.path(), false).unwrap();
    fs::copy(
        other.path().join("ca-key.pem"),
        tmp.path().join("ca-key.pem"),
    )
    .unwrap();
    let err = CertificateAuthority::load(tmp.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not belong"), "{err}");
    assert!(err.contains(&tmp.path().display().to_string()), "{err}");
}

#[test]
fn load_names_the_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let err = CertificateAuthority::load(tmp.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("ca.pem"), "{err}");
}

#[test]
fn issued_certificate_carries_the_identity() {
    let ca = CertificateAuthority::generate().unwrap();
    let who = id(Role::Operator, "alice");
    let issued = ca
        .issue_for_days(who.clone(), vec!["ops.example.com".into()], 10)
        .unwrap();
    let info = describe(issued.cert_pem.as_bytes()).unwrap();
    assert_eq!(info.identity.as_ref(), Some(&who));
    assert!(!info.is_ca);
    assert!(
        info.subject.contains("CN=operator/alice"),
        "{}",
        info.subject
    );
    assert!(info.issuer.contains("CN=recfleet CA"), "{}", info.issuer);
    assert_eq!(
        info.sans,
        [
            "URI:spiffe://recfleet/operator/alice",
            "DNS:ops.example.com"
        ]
    );
    let mat = material(&ca, &issued);
    assert_eq!(identity_from_der(&mat.chain[0]).unwrap(), who);
    assert_eq!(mat.identity().unwrap(), who);
    // The way quinn hands it out.
    let boxed: Box<dyn Any> = Box::new(mat.chain.clone());
    assert_eq!(identity_from_certs(Some(boxed)).unwrap(), who);
    assert!(matches!(
        identity_from_certs(None),
        Err(CertError::NoPeerCertificate)
    ));
    assert!(identity_from_certs(Some(Box::new(42u8))).is_err());
}

#[test]
fn coordinator_gets_default_sans_and_others_none() {
    let ca = CertificateAuthority::generate().unwrap();
    let coord = ca
        .issue_for_days(id(Role::Coordinator, "c"), vec![], 1)
        .unwrap();
    let sans = describe(coord.cert_pem.as_bytes()).unwrap().sans;
    assert_eq!(
        sans,
        [
            "URI:spiffe://recfleet/coordinator/c",
            "DNS:localhost",
            "IP:127.0.0.1"
        ]
    );
    let coord = ca
        .issue_for_days(
            id(Role::Coordinator, "c"),
            vec!["10.0.0.7".into(), "::1".into()],
            1,
        )
        .unwrap();
    let sans = describe(coord.cert_pem.as_bytes()).unwrap().sans;
    assert_eq!(
        sans,
        [
            "URI:spiffe://recfleet/coordinator/c",
            "IP:10.0.0.7",
            "IP:::1"
        ]
    );
    let viewer = ca.issue_for_days(id(Role::Viewer, "v"), vec![], 1).unwrap();
    assert_eq!(describe(viewer.cert_pem.as_bytes()).unwrap().sans.len(), 1);
}

#[test]
fn bad_requests_are_refused() {
    let ca = CertificateAuthority::generate().unwrap();
    let who = id(Role::Agent, "a");
    for san in ["not a name", "", "a..b", "*"] {
        let err = ca
            .issue_for_days(who.clone(), vec![san.into()], 1)
            .unwrap_err();
        assert!(err.is_bad_input(), "{san}: {err}");
        assert!(err.to_string().contains(&format!("\"{san}\"")), "{err}");
    }
    assert!(ca.issue_for_days(who.clone(), vec![], 0).is_err());
    let now = OffsetDateTime::now_utc();
    let reversed = IssueRequest {
        identity: who.clone(),
        sans: vec![],
        not_before: now,
        not_after: now - Duration::days(1),
    };
    assert!(matches!(
        ca.issue(&reversed),
        Err(CertError::InvalidValidity { .. })
    ));
    let too_long = IssueRequest {
        not_before: now,
        not_after: ca.not_after() + Duration::days(1),
        ..reversed
    };
    assert!(matches!(
        ca.issue(&too_long),
        Err(CertError::OutlivesCa { .. })
    ));
}

#[test]
fn roles_and_names_are_validated() {
    let err = "admin".parse::<Role>().unwrap_err().to_string();
    assert!(err.contains("\"admin\""), "{err}");
    assert!(
        err.contains("coordinator, agent, operator, viewer"),
        "{err}"
    );
    assert!("Operator".parse::<Role>().is_err());
    for r in Role::ALL {
        assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
    }
    assert!(Role::Operator.can_operate() && Role::Operator.can_read_fleet());
    assert!(!Role::Viewer.can_operate() && Role::Viewer.can_read_fleet());
    assert!(Role::Agent.is_agent() && !Role::Agent.can_read_fleet());
    assert!(!Role::Coordinator.can_operate());

    let err = Identity::new(Role::Agent, "bad/name")
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"bad/name\""), "{err}");
    let who = id(Role::Agent, "w-1");
    assert_eq!(who.to_string(), "agent/w-1");
    assert_eq!(who.spiffe_uri(), "spiffe://recfleet/agent/w-1");
    assert_eq!(Identity::from_spiffe_uri(&who.spiffe_uri()).unwrap(), who);
}

#[test]
fn expired_certificate_can_be_issued_and_is_rejected_in_handshake() {
    let ca = CertificateAuthority::generate().unwrap();
    let now = OffsetDateTime::now_utc();
    let expired = ca
        .issue(&IssueRequest {
            identity: id(Role::Viewer, "old"),
            sans: vec![],
            not_before: now - Duration::days(10),
            not_after: now - Duration::days(1),
        })
        .unwrap();
    let info = describe(expired.cert_pem.as_bytes()).unwrap();
    assert!(info.is_expired_at(now));

    let server = ca
        .issue_for_days(id(Role::Coordinator, "main"), vec![], 1)
        .unwrap();
    let err = handshake(
        &material(&ca, &expired),
        &material(&ca, &server),
        "localhost",
        ALPN,
    )
    .unwrap_err();
    assert!(format!("{err:?}").contains("Expired"), "{err:?}");
}

#[test]
fn mutual_tls_accepts_the_fleet_and_reports_the_client_identity() {
    let ca = CertificateAuthority::generate().unwrap();
    let server = ca
        .issue_for_days(id(Role::Coordinator, "main"), vec![], 1)
        .unwrap();
    let client = ca
        .issue_for_days(id(Role::Operator, "alice"), vec![], 1)
        .unwrap();
    let conn = handshake(
        &material(&ca, &client),
        &material(&ca, &server),
        "127.0.0.1",
        ALPN,
    )
    .unwrap();
    assert_eq!(conn.alpn_protocol(), Some(&b"recfleet/1"[..]));
    let peer: Vec<CertificateDer<'static>> = conn.peer_certificates().unwrap().to_vec();
    assert_eq!(
        identity_from_certs(Some(Box::new(peer))).unwrap(),
        id(Role::Operator, "alice")
    );
}

#[test]
fn client_from_another_ca_is_rejected() {
    let ca = CertificateAuthority::generate().unwrap();
    let rogue_ca = CertificateAuthority::generate().unwrap();
    let server = ca
        .issue_for_days(id(Role::Coordinator, "main"), vec![], 1)
        .unwrap();
    // Same name and role, and it even trusts the real CA: still refused,
    // because its own certificate is signed by a CA the server does not trust.
    let rogue = rogue_ca
        .issue_for_days(id(Role::Operator, "alice"), vec![], 1)
        .unwrap();
    let rogue_material = TlsMaterial::from_pem(
        ca.cert_pem().as_bytes(),
        rogue.cert_pem.as_bytes(),
        rogue.key_pem.as_bytes(),
    )
    .unwrap();
    let err = handshake(&rogue_material, &material(&ca, &server), "localhost", ALPN).unwrap_err();
    assert!(
        matches!(err, rustls::Error::InvalidCertificate(_)),
        "{err:?}"
    );
}

#[test]
fn server_from_another_ca_or_wrong_name_is_rejected() {
    let ca = CertificateAuthority::generate().unwrap();
    let rogue_ca = CertificateAuthority::generate().unwrap();
    let client = material(
        &ca,
        &ca.issue_for_days(id(Role::Agent, "w"), vec![], 1).unwrap(),
    );
    let rogue_server = rogue_ca
        .issue_for_days(id(Role::Coordinator, "main"), vec![], 1)
        .unwrap();
    let err = handshake(
        &client,
        &material(&rogue_ca, &rogue_server),
        "localhost",
        ALPN,
    )
    .unwrap_err();
    assert!(
        matches!(err, rustls::Error::InvalidCertificate(_)),
        "{err:?}"
    );

    let server = ca
        .issue_for_days(id(Role::Coordinator, "main"), vec![], 1)
        .unwrap();
    let err = handshake(
        &client,
        &material(&ca, &server),
        "coordinator.example",
        ALPN,
    )
    .unwrap_err();
    assert!(format!("{err:?}").contains("NotValidForName"), "{err:?}");
}

#[test]
fn other_protocol_version_is_refused_by_alpn() {
    let ca = CertificateAuthority::generate().unwrap();
    let server = ca
        .issue_for_days(id(Role::Coordinator, "main"), vec![], 1)
        .unwrap();
    let client = ca.issue_for_days(id(Role::Agent, "w"), vec![], 1).unwrap();
    let err = handshake(
        &material(&ca, &client),
        &material(&ca, &server),
        "localhost",
        &[b"recfleet/2"],
    )
    .unwrap_err();
    assert!(
        matches!(err, rustls::Error::NoApplicationProtocol),
        "{err:?}"
    );
}

#[test]
fn configs_are_tls13_only_without_early_data() {
    let ca = CertificateAuthority::generate().unwrap();
    let m = material(
        &ca,
        &ca.issue_for_days(id(Role::Coordinator, "c"), vec![], 1)
            .unwrap(),
    );
    let s = server_config(&m, ALPN).unwrap();
    assert_eq!(s.max_early_data_size, 0);
    assert_eq!(s.alpn_protocols, vec![b"recfleet/1".to_vec()]);
    let c = client_config(&m, ALPN).unwrap();
    assert!(!c.enable_early_data);
    assert!(s
        .crypto_provider()
        .cipher_suites
        .iter()
        .any(|cs| cs.version() == &rustls::version::TLS13));
}

#[test]
fn mismatched_key_is_refused_when_building_configs() {
    let ca = CertificateAuthority::generate().unwrap();
    let a = ca.issue_for_days(id(Role::Agent, "a"), vec![], 1).unwrap();
    let b = ca.issue_for_days(id(Role::Agent, "b"), vec![], 1).unwrap();
    let m = TlsMaterial::from_pem(
        ca.cert_pem().as_bytes(),
        a.cert_pem.as_bytes(),
        b.key_pem.as_bytes(),
    )
    .unwrap();
    assert!(server_config(&m, ALPN).is_err());
    assert!(client_config(&m, ALPN).is_err());
}

#[test]
fn cert_files_are_written_safely_and_loaded_back() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::init(tmp.path(), false).unwrap();
    let who = id(Role::Agent, "w1");
    let issued = ca.issue_for_days(who.clone(), vec![], 5).unwrap();
    let out = tmp.path().join("out");
    let paths = write_cert_files(&out, &who.file_stem(), &issued, false).unwrap();
    assert_eq!(paths.cert, out.join("agent-w1.pem"));
    assert_eq!(paths.key, out.join("agent-w1-key.pem"));
    assert_eq!(mode(&paths.key), 0o600);
    assert_eq!(mode(&out), 0o700);

    let err = write_cert_files(&out, &who.file_stem(), &issued, false).unwrap_err();
    assert!(err.to_string().contains("use --force"), "{err}");

    // With force, even a key file someone loosened ends up 0600 again.
    fs::set_permissions(&paths.key, fs::Permissions::from_mode(0o644)).unwrap();
    let again = ca.issue_for_days(who.clone(), vec![], 5).unwrap();
    write_cert_files(&out, &who.file_stem(), &again, true).unwrap();
    assert_eq!(mode(&paths.key), 0o600);
    assert_eq!(fs::read_to_string(&paths.key).unwrap(), again.key_pem);

    let m = TlsMaterial::load(
        &CertificateAuthority::cert_path(tmp.path()),
        &paths.cert,
        &paths.key,
    )
    .unwrap();
    assert_eq!(m.identity().unwrap(), who);

    // Errors name the file that is wrong.
    let err = TlsMaterial::load(&paths.key, &paths.cert, &paths.key)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("agent-w1-key.pem") && err.contains("no certificate"),
        "{err}"
    );
    let err = TlsMaterial::load(&paths.cert, &paths.cert, &paths.cert)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("agent-w1.pem") && err.contains("no private key"),
        "{err}"
    );
    let err = TlsMaterial::load(&out.join("nope.pem"), &paths.cert, &paths.key)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope.pem"), "{err}");
}
