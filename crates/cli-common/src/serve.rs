//! Serving a gRPC daemon: health and reflection next to its own services,
//! the unix socket's mode flag, and a graceful stop on SIGINT/SIGTERM.

use std::time::Duration;

use thiserror::Error;

use crate::listen::Listener;

/// How long a shutdown waits for open connections before giving up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("setting up gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A unix socket's permission bits, as octal on the command line (`660`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketMode(pub u32);

#[derive(Debug, Error)]
#[error("{0:?} is not an octal file mode (e.g. 660)")]
pub struct BadSocketMode(String);

impl std::str::FromStr for SocketMode {
    type Err = BadSocketMode;
    fn from_str(s: &str) -> Result<Self, BadSocketMode> {
        u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o777).map(SocketMode).ok_or_else(|| BadSocketMode(s.into()))
    }
}

/// The health service (its reporter, to mark services serving) and a
/// reflection service describing `descriptor_sets` and health itself.
pub fn health_and_reflection(
    descriptor_sets: &[&'static [u8]],
) -> Result<
    (
        tonic_health::server::HealthReporter,
        tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
        tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
    ),
    ServeError,
> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for set in descriptor_sets {
        builder = builder.register_encoded_file_descriptor_set(set);
    }
    Ok((reporter, health, builder.build_v1()?))
}

/// Serves `router` on `listener` until SIGINT/SIGTERM, then waits at most
/// [`SHUTDOWN_GRACE`] for open connections.
pub async fn serve_until_signal(
    listener: Listener,
    router: tonic::transport::server::Router,
) -> Result<(), ServeError> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        crate::shutdown_signal().await;
        let _ = tx.send(());
    };
    tokio::select! {
        r = listener.serve_tonic(router, shutdown) => r?,
        _ = async { let _ = rx.await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; exiting anyway");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_modes_are_octal_and_at_most_0777() {
        assert_eq!("660".parse::<SocketMode>().ok(), Some(SocketMode(0o660)));
        assert_eq!("0600".parse::<SocketMode>().ok(), Some(SocketMode(0o600)));
        for bad in ["", "rw", "1777", "89"] {
            assert!(bad.parse::<SocketMode>().is_err(), "{bad}");
        }
    }
}
