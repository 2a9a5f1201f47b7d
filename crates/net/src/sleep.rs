//! The one timer both event loops (a server connection and the client driver) select on: a
//! deadline that may be absent.

use tokio::time::Instant;

/// Sleeps until `at`, or forever. The timer is boxed: a server connection's is rarely armed (a
/// flooding client, a closing one), and inline it would make every connection's future larger.
pub(crate) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => Box::pin(tokio::time::sleep_until(at)).await,
        None => std::future::pending().await,
    }
}
