//! Giving freed memory back to the system.
//!
//! glibc's allocator keeps the pages it frees for later: after an attack's 200 connections and
//! the queues they filled are gone, the server holds nothing more than before (three attacks in
//! a row cost no more than one), yet its resident memory stayed 29–82% above where it started.
//! Every [`Trim::every`], if the allocator holds at least [`Trim::min_free`] bytes free, it is
//! asked to return its whole free pages (`malloc_trim(0)`, which releases free pages inside its
//! heaps too, not only at their tops). Elsewhere than glibc this does nothing.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, trace};

use crate::clock;

/// When to give freed memory back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trim {
    /// How often to look at what the allocator holds free.
    pub every: Duration,
    /// Give it back only when at least this many bytes are free (a trim walks every heap, and
    /// pages given back are faulted in again when the server grows).
    pub min_free: usize,
}

impl Default for Trim {
    fn default() -> Self {
        Trim {
            every: Duration::from_secs(10),
            min_free: 64 * 1024,
        }
    }
}

/// Bytes the allocator holds free (not in use, not returned to the system), if it says.
pub fn free_bytes() -> Option<usize> {
    heap().map(|(free, _)| free)
}

/// The allocator's free and in-use bytes, if it says.
fn heap() -> Option<(usize, usize)> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics (under its own locks).
        let info = unsafe { libc::mallinfo2() };
        Some((info.fordblks, info.uordblks))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Returns the allocator's whole free pages to the system; whether any were.
pub fn give_back() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only releases pages the allocator holds free (under its locks).
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Gives freed memory back as `trim` says until `stop`: whenever the allocator holds
/// [`Trim::min_free`] bytes more free than after the last trim (or than the least it held
/// since, as memory freed is reused).
pub async fn trim_task(trim: Trim, stop: CancellationToken) {
    let Some(mut baseline) = free_bytes() else {
        return;
    };
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = clock::sleep(trim.every) => {}
        }
        let (free, in_use) = heap().unwrap_or_default();
        trace!(free, in_use, "the allocator's heap");
        baseline = baseline.min(free);
        if free < baseline + trim.min_free {
            continue;
        }
        // A trim holds the allocator's locks while it walks the heaps: off the workers.
        let released = tokio::task::spawn_blocking(give_back)
            .await
            .unwrap_or(false);
        // Free bytes stay free after a trim (their pages are returned, the space is kept).
        baseline = free_bytes().unwrap_or(free);
        debug!(free, released, "gave freed memory back to the system");
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// This process's resident memory, in bytes.
    fn resident() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split(' ').nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    #[test]
    fn a_large_release_is_given_back() {
        // Many small blocks (below the mmap threshold, so they live in a heap), freed but for a
        // few that keep the heap from simply shrinking at its top.
        let blocks: Vec<Vec<u8>> = (0..8192).map(|i| vec![i as u8 | 1; 4000]).collect();
        let kept: Vec<Vec<u8>> = blocks.iter().step_by(1024).cloned().collect();
        drop(blocks);
        let free = free_bytes().expect("glibc reports its free bytes");
        assert!(free >= 16 * 1024 * 1024, "free after the release: {free}");
        let before = resident();
        assert!(give_back(), "the trim returned nothing");
        let after = resident();
        assert!(
            after + 16 * 1024 * 1024 <= before,
            "resident before the trim {before}, after {after}"
        );
        drop(kept);
    }
}
