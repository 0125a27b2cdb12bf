//! The certificates `init` and `rotate` make are checked by real rustls
//! handshakes over loopback sockets, as the nodes will use them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use rustls::pki_types::ServerName;

use super::*;
use crate::config::{certificates, client_config, server_config, ClientAuth};

fn nodes() -> Vec<NodeSpec> {
    NodeSpec::parse_list("1=n1+127.0.0.1,2=n2+127.0.0.2,3=n3").unwrap()
}

fn init_dir() -> (tempfile::TempDir, CertDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path().join("certs"));
    dir.init(&nodes(), "admin", LEAF_DAYS).unwrap();
    (tmp, dir)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A TLS handshake over a loopback socket between a server using node
/// `server`'s certificate (client certificates `auth`) and a client that
/// trusts `client_ca`, shows `client_identity` and dials `name`. Returns
/// what the server saw of the client's identity, or the first error.
fn handshake(
    server_dir: &CertDir,
    server: u64,
    auth: ClientAuth,
    client_ca: &Path,
    client_identity: Option<(PathBuf, PathBuf)>,
    name: &str,
) -> std::result::Result<Option<Identity>, String> {
    let config = server_config(
        Some(&server_dir.ca_cert()),
        &server_dir.node_cert(server),
        &server_dir.node_key(server),
        auth,
        &[b"h2"],
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let served = std::thread::spawn(move || -> std::result::Result<Option<Identity>, String> {
        let (mut sock, _) = listener.accept().unwrap();
        let mut conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).map_err(|e| e.to_string())?;
        tls.write_all(b"pong!").map_err(|e| e.to_string())?;
        Ok(conn
            .peer_certificates()
            .map(|chain| Identity::of_certificate(&chain[0]).unwrap()))
    });
    let identity = client_identity
        .as_ref()
        .map(|(c, k)| (c.as_path(), k.as_path()));
    let config = client_config(client_ca, identity, &[b"h2"]).unwrap();
    let mut conn = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from(name.to_string()).unwrap(),
    )
    .unwrap();
    let mut sock = TcpStream::connect(addr).unwrap();
    let client = (|| {
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        tls.write_all(b"ping!")?;
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf)?;
        assert_eq!(&buf, b"pong!");
        Ok::<_, std::io::Error>(())
    })();
    drop(sock);
    let served = served.join().unwrap();
    client.map_err(|e| e.to_string())?;
    served
}

#[test]
fn init_writes_a_ca_and_node_and_admin_certificates_with_private_keys() {
    let (_tmp, dir) = init_dir();
    assert_eq!(mode(&dir.dir), 0o700);
    for (cert, key) in [
        (dir.ca_cert(), dir.ca_key()),
        (dir.node_cert(1), dir.node_key(1)),
        (dir.node_cert(3), dir.node_key(3)),
        (dir.user_cert("admin"), dir.user_key("admin")),
    ] {
        assert_eq!(mode(&key), 0o600, "{}", key.display());
        assert_eq!(mode(&cert), 0o644, "{}", cert.display());
    }
    for id in 1..=3 {
        let der = &certificates(&dir.node_cert(id)).unwrap()[0];
        assert_eq!(Identity::of_certificate(der).unwrap(), Identity::Node(id));
    }
    let admin = &certificates(&dir.user_cert("admin")).unwrap()[0];
    assert_eq!(
        Identity::of_certificate(admin).unwrap(),
        Identity::User("admin".into())
    );
    let ca = &certificates(&dir.ca_cert()).unwrap()[0];
    let err = Identity::of_certificate(ca).unwrap_err().to_string();
    assert!(err.contains("names no Bifrost node or user"), "{err}");
    assert_eq!(
        dir.node_hosts(1).unwrap(),
        HostList(vec!["n1".into(), "127.0.0.1".into()])
    );
}

#[test]
fn nodes_authenticate_each_other_by_name_address_and_node_id() {
    let (_tmp, dir) = init_dir();
    let peer = Some((dir.node_cert(2), dir.node_key(2)));
    for name in ["n1", "127.0.0.1"] {
        let seen = handshake(
            &dir,
            1,
            ClientAuth::Required,
            &dir.ca_cert(),
            peer.clone(),
            name,
        );
        assert_eq!(seen, Ok(Some(Identity::Node(2))), "dialing {name}");
    }
    let admin = Some((dir.user_cert("admin"), dir.user_key("admin")));
    let seen = handshake(&dir, 1, ClientAuth::Optional, &dir.ca_cert(), admin, "n1");
    assert_eq!(seen, Ok(Some(Identity::User("admin".into()))));
    let seen = handshake(&dir, 1, ClientAuth::Optional, &dir.ca_cert(), None, "n1");
    assert_eq!(
        seen,
        Ok(None),
        "optional client certificates let a token client in"
    );
}

#[test]
fn a_wrong_host_name_another_ca_or_a_missing_client_certificate_is_refused() {
    let (_tmp, dir) = init_dir();
    let (_tmp2, other) = init_dir();
    let peer = Some((dir.node_cert(2), dir.node_key(2)));

    let err = handshake(
        &dir,
        1,
        ClientAuth::Required,
        &dir.ca_cert(),
        peer.clone(),
        "n2",
    )
    .unwrap_err();
    assert!(
        err.contains("not valid for name \"n2\""),
        "wrong host name: {err}"
    );

    let err = handshake(&dir, 1, ClientAuth::Required, &other.ca_cert(), peer, "n1").unwrap_err();
    assert!(
        err.contains("UnknownIssuer"),
        "server from another CA: {err}"
    );

    let stranger = Some((other.node_cert(2), other.node_key(2)));
    let err = handshake(
        &dir,
        1,
        ClientAuth::Required,
        &dir.ca_cert(),
        stranger,
        "n1",
    )
    .unwrap_err();
    assert!(
        err.contains("UnknownCA"),
        "a peer certificate from another CA: {err}"
    );

    let err = handshake(&dir, 1, ClientAuth::Required, &dir.ca_cert(), None, "n1").unwrap_err();
    assert!(
        err.contains("CertificateRequired"),
        "no client certificate: {err}"
    );
}

#[test]
fn init_refuses_a_directory_that_already_holds_a_ca() {
    let (_tmp, dir) = init_dir();
    let before = fs::read(dir.ca_key()).unwrap();
    let err = dir
        .init(&nodes(), "admin", LEAF_DAYS)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ca.pem") && err.contains("a CA is already here"),
        "{err}"
    );
    assert_eq!(
        fs::read(dir.ca_key()).unwrap(),
        before,
        "the CA key is untouched"
    );
}

#[test]
fn rotate_gives_a_node_a_new_key_under_the_same_ca_and_keeps_its_hosts() {
    let (_tmp, dir) = init_dir();
    let old_key = fs::read(dir.node_key(1)).unwrap();
    let old_cert = fs::read(dir.node_cert(1)).unwrap();
    let written = dir.rotate_node(1, None, 30).unwrap();
    assert_eq!(written, vec![dir.node_cert(1), dir.node_key(1)]);
    assert_ne!(fs::read(dir.node_key(1)).unwrap(), old_key);
    assert_ne!(fs::read(dir.node_cert(1)).unwrap(), old_cert);
    assert_eq!(mode(&dir.node_key(1)), 0o600);
    assert_eq!(
        dir.node_hosts(1).unwrap(),
        HostList(vec!["n1".into(), "127.0.0.1".into()])
    );
    let peer = Some((dir.node_cert(2), dir.node_key(2)));
    let seen = handshake(
        &dir,
        1,
        ClientAuth::Required,
        &dir.ca_cert(),
        peer,
        "127.0.0.1",
    );
    assert_eq!(seen, Ok(Some(Identity::Node(2))));

    dir.rotate_node(3, Some("n3.plant.local+10.1.2.3".parse().unwrap()), 30)
        .unwrap();
    assert_eq!(
        dir.node_hosts(3).unwrap(),
        HostList(vec!["n3.plant.local".into(), "10.1.2.3".into()])
    );
    let err = dir.rotate_node(9, None, 30).unwrap_err().to_string();
    assert!(err.contains("node-9.pem"), "{err}");
}

#[test]
fn bad_node_lists_and_names_say_which_part_is_wrong() {
    let cases = [
        ("1=n1,n2", "node 2 ('n2'): expected ID=HOST"),
        ("0=n1", "node 1 ('0=n1'): '0' is not a node id"),
        ("1=n1,1=n2", "node 2 ('1=n2'): node 1 is listed twice"),
        ("1=n_1", "host 'n_1'"),
        ("1=n1+", "host ''"),
    ];
    for (input, expected) in cases {
        let err = NodeSpec::parse_list(input).unwrap_err().to_string();
        assert!(err.contains(expected), "{input}: {err}");
    }
    let (_tmp, dir) = init_dir();
    let err = dir.issue_user("bad/name", 1).unwrap_err().to_string();
    assert!(err.contains("user 'bad/name'"), "{err}");
    let err = dir.rotate_node(1, None, 0).unwrap_err().to_string();
    assert!(err.contains("at least one day"), "{err}");
}
