//! Any bytes as what a client sends, from the handshake on: the daemon
//! side of a connection (over an in-memory pipe, on an empty in-memory
//! store) never panics and always ends once the input does — a refused,
//! broken or finished connection, never a hang (libFuzzer's -timeout).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use snix_store::composition::StoreServices;
use snix_worker_protocol::server::{Backend, Connection, Policy};
use snix_worker_protocol::trust::Access;
use tokio::io::AsyncWriteExt;

fuzz_target!(|data: &[u8]| {
    let Some((&who, input)) = data.split_first() else { return };
    let access = [Access::Trusted, Access::Allowed, Access::Refused][who as usize % 3];
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    rt.block_on(async {
        let store = StoreServices::from_addrs("memory://", "memory://", "memory://").expect("memory services");
        let policy =
            Arc::new(Policy { require_sigs: true, trusted_public_keys: vec![], daemon_version: "fuzz".into() });
        let (client, server) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(server);
        let serving = tokio::spawn(async move {
            if let Ok(Some(c)) = Connection::handshake(r, w, access, "fuzz".into(), Backend::new(store), policy).await {
                let _ = c.serve().await;
            }
        });
        let input = input.to_vec();
        let (mut cr, mut cw) = tokio::io::split(client);
        // the daemon's answers are read (and dropped) so that it never blocks on a full pipe
        let draining = tokio::spawn(async move { tokio::io::copy(&mut cr, &mut tokio::io::sink()).await });
        let _ = cw.write_all(&input).await;
        let _ = cw.shutdown().await;
        drop(cw);
        serving.await.expect("the connection task panicked");
        let _ = draining.await;
    });
});
