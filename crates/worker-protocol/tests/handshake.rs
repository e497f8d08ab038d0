//! `Connection::handshake` through a socket pair, against the byte-by-byte
//! client of `integration_tests::raw_client`: at 1.21 (Nix 2.3), 1.34 (Nix
//! 2.8 – 2.18), 1.35 (Lix) and 1.38 (Nix 2.24 – 2.35, with feature lists), in both
//! orders clients send their first words, for trusted, allowed and refused
//! users; then one operation on the connection.
#![allow(clippy::unwrap_used)]

use std::os::unix::net::UnixStream;
use std::sync::Arc;

use integration_tests::raw_client::{u64le, Handshake, RawClient};
use snix_store::composition::StoreServices;
use snix_worker_protocol::server::{Backend, Connection, Policy};
use snix_worker_protocol::trust::Access;

const DAEMON_VERSION: &str = "snix test";
const NIX_2_35_FEATURES: &[&str] = &["realisation-with-path-not-hash", "delete-dead-specific-referrers"];

fn backend() -> Backend {
    Backend::new(StoreServices::from_addrs("memory://", "memory://", "memory://").unwrap())
}

fn policy() -> Arc<Policy> {
    Arc::new(Policy { require_sigs: true, trusted_public_keys: vec![], daemon_version: DAEMON_VERSION.into() })
}

/// Our side of a socket pair, served as the daemon serves a connection.
fn serve(access: Access) -> UnixStream {
    let (client, server) = UnixStream::pair().unwrap();
    server.set_nonblocking(true).unwrap();
    let (r, w) = tokio::net::UnixStream::from_std(server).unwrap().into_split();
    tokio::spawn(async move {
        if let Ok(Some(c)) = Connection::handshake(r, w, access, "tester".into(), backend(), policy()).await {
            let _ = c.serve().await;
        }
    });
    client
}

/// The client's handshake at `version`, then (unless refused) one
/// IsValidPath; the client runs on a blocking thread.
async fn handshake(version: u64, features: &'static [&'static str], access: Access, eager: bool) -> Handshake {
    let stream = serve(access);
    tokio::task::spawn_blocking(move || {
        let (h, mut c) = RawClient::handshake(stream, version, features, eager);
        if h.refused.is_none() {
            c.works();
        } else {
            assert!(c.closed(), "a refused client is hung up on");
        }
        h
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_version_gets_the_fields_it_expects() {
    for eager in [false, true] {
        // 1.21 (Nix 2.3): no version string, no trust
        let h = handshake(0x115, &[], Access::Trusted, eager).await;
        let expected = Handshake {
            server_version: 0x126,
            server_features: None,
            daemon_version: None,
            trust: None,
            refused: None,
        };
        assert_eq!(h, expected);

        // 1.34 (Nix 2.8 – 2.18): version string, no trust
        let h = handshake(0x122, &[], Access::Allowed, eager).await;
        assert_eq!(h.daemon_version.as_deref(), Some(DAEMON_VERSION));
        assert_eq!((h.trust, h.server_features, h.refused), (None, None, None));

        // 1.35 (Lix): trust, but no feature lists
        let h = handshake(0x123, &[], Access::Allowed, eager).await;
        assert_eq!(h.daemon_version.as_deref(), Some(DAEMON_VERSION));
        assert_eq!((h.trust, h.server_features, h.refused), (Some(2), None, None));

        // 1.38: feature lists both ways; ours names only what we implement (none)
        for features in [&[][..], NIX_2_35_FEATURES, &["some-future-feature"]] {
            let h = handshake(0x126, features, Access::Allowed, eager).await;
            assert_eq!(h.server_features, Some(vec![]), "client sent {features:?}");
            assert_eq!(h.daemon_version.as_deref(), Some(DAEMON_VERSION));
            assert_eq!(h.trust, Some(2), "not trusted");
            assert_eq!(h.refused, None);
        }
        let h = handshake(0x126, NIX_2_35_FEATURES, Access::Trusted, eager).await;
        assert_eq!(h.trust, Some(1), "trusted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_client_is_answered_at_our_version() {
    // 1.40, a future Nix: the server says 1.38, and both speak 1.38
    let h = handshake(0x128, NIX_2_35_FEATURES, Access::Allowed, false).await;
    assert_eq!(h.server_version, 0x126);
    assert_eq!(h.server_features, Some(vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_users_get_an_error_in_each_layout() {
    for version in [0x115, 0x122, 0x126] {
        let h = handshake(version, NIX_2_35_FEATURES, Access::Refused, true).await;
        let msg = h.refused.unwrap_or_else(|| panic!("{version:#x}: not refused"));
        assert_eq!(msg, "user 'tester' is not allowed to connect to the Nix daemon", "{version:#x}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_old_clients_and_wrong_magic_end_the_connection() {
    for first_words in [vec![u64le(0x6e697863), u64le(0x109)], vec![u64le(0xdead_beef)]] {
        let (mut client, server) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        let (r, w) = tokio::net::UnixStream::from_std(server).unwrap().into_split();
        let server = tokio::spawn(Connection::handshake(r, w, Access::Trusted, "t".into(), backend(), policy()));
        for w in first_words {
            std::io::Write::write_all(&mut client, &w).unwrap();
        }
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), server).await.unwrap().unwrap();
        assert!(r.is_err(), "handshake accepted");
    }
}
