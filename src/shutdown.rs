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
        let mut signals = 0;
        loop {
            wait_for_signal().await;
            signals += 1;
            if signals == 1 {
                tracing::warn!("shutdown requested: finishing in-flight deletes; signal again to exit now");
                cancel.cancel();
            } else {
                tracing::warn!("second signal: exiting now");
                std::process::exit(EXIT_INTERRUPTED);
            }
        }
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
