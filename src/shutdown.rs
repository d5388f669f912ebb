//! The process's one shutdown signal: the first SIGTERM or SIGINT cancels a [`CancellationToken`]
//! (in-flight deletes finish, nothing new starts); a second one exits at once with status 130.

use tokio_util::sync::CancellationToken;

/// The exit status after a second signal, as shells report death by SIGINT.
pub const EXIT_INTERRUPTED: i32 = 130;

/// One token for the whole process; must be called inside a tokio runtime.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        // Listeners are made once: a signal that comes while the first is being handled is not
        // lost between two listeners.
        let mut signals = Signals::new();
        signals.next().await;
        tracing::warn!("shutdown requested: finishing in-flight deletes; signal again to exit now");
        cancel.cancel();
        signals.next().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(EXIT_INTERRUPTED);
    });
    token
}

/// SIGTERM and SIGINT, as one stream.
struct Signals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                terminate: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Waits for the next SIGTERM or SIGINT.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            let terminate = async {
                match self.terminate.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            let interrupt = async {
                match self.interrupt.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = terminate => {}
                _ = interrupt => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
