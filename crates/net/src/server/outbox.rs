//! The per-client outbox (bounded in bytes: the SendQ) and the shared append-only blocks the
//! outgoing lines live in. The core fills outboxes while it holds its lock; each connection task
//! empties its own. Their layout is what makes a room's fan-out cheap: one copy of each line,
//! one reference per recipient per burst, one iovec per run.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use append_only_bytes::{AppendOnlyBytes, BytesSlice};
use futures_util::task::AtomicWaker;

/// Size of the blocks the outgoing lines are copied into (see [`Lines`]).
const LINES_BLOCK: usize = 16 * 1024;
/// Size of the blocks a client's lines are copied into once it holds runs in too many shared
/// blocks (see [`Outbox::push`]).
const SPILL_BLOCK: usize = 1024;

/// What a connection task and the core share: the lines waiting to be written.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    inner: Mutex<OutboxInner>,
    /// The connection task, while it waits. (Lock-free and kept here rather than in the task's
    /// future, unlike `Notify`: every byte of that future is paid per idle connection.)
    waker: AtomicWaker,
}

#[derive(Debug, Default)]
struct OutboxInner {
    /// Runs of consecutive lines of one [`Lines`] block.
    queue: VecDeque<BytesSlice>,
    bytes: usize,
    /// Shared blocks the queue has runs in.
    blocks: u32,
    /// This client's own blocks, once its runs would keep too many shared ones alive (see
    /// [`Outbox::push`]); dropped when the queue is taken.
    spill: Option<Lines<SPILL_BLOCK>>,
    state: OutboxState,
    /// Something changed since the task last looked. Kept under the lock, beside the queue:
    /// the core's fan-out then touches one cache line per recipient, not two (an atomic flag
    /// of its own cost a third of the fan-out's time in a profile, in cache misses).
    changed: bool,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub(super) enum OutboxState {
    #[default]
    Open,
    /// Flush what is queued, then close.
    Closing,
    /// Close now, dropping what is queued (the client stopped reading).
    Killed,
}

impl Outbox {
    /// Never poisoned: the core changes an outbox only under its own lock, where a panic aborts
    /// the process (see [`super::shared`]), and the connection task only swaps a few fields, which
    /// cannot panic. So there is no half-changed queue to recover here.
    fn lock(&self) -> MutexGuard<'_, OutboxInner> {
        self.inner
            .lock()
            .expect("an outbox's lock is never poisoned (a panic under the core's lock aborts)")
    }

    /// Queues `line`; `false` if that would pass `cap` bytes (the outbox is then killed).
    /// A line that continues the last one queued in its block extends that run: no new
    /// reference to the block, and one iovec for the run when it is written.
    ///
    /// A run keeps its whole block alive, so a client that stopped reading and gets a line now
    /// and then, far apart in the shared blocks, could hold a block per line while its SendQ
    /// counts only the lines. Once its shared blocks past the first would fill more than its
    /// SendQ and more than twice its queued bytes, its lines are copied into blocks of its own
    /// instead: all it holds stays within three times its SendQ plus 17 KiB. (A client merely
    /// behind in a busy room has most lines of its blocks queued, and never copies.)
    pub(super) fn push(&self, line: &BytesSlice, cap: usize) -> bool {
        let mut inner = self.lock();
        if inner.state != OutboxState::Open {
            return true;
        }
        let fits = inner.bytes + line.len() <= cap;
        if fits {
            let inner = &mut *inner;
            inner.bytes += line.len();
            let merged = inner
                .queue
                .back_mut()
                .is_some_and(|run| run.try_merge(line).is_ok());
            if !merged {
                // Blocks fill in order, so a run in another block than the last run's is in a
                // block the queue holds no run in yet (until it spills; then it always copies).
                let new_block = inner.queue.back().is_none_or(|run| !run.ptr_eq(line));
                let extra = inner.blocks as usize * LINES_BLOCK;
                let spill =
                    new_block && (inner.spill.is_some() || extra > (2 * inner.bytes).max(cap));
                let run = if spill {
                    inner.spill.get_or_insert_with(Lines::new).put(line)
                } else {
                    inner.blocks += u32::from(new_block);
                    line.clone()
                };
                // A copy may continue the last copy.
                let merged = spill
                    && inner
                        .queue
                        .back_mut()
                        .is_some_and(|last| last.try_merge(&run).is_ok());
                if !merged {
                    inner.queue.push_back(run);
                }
            }
        } else {
            inner.state = OutboxState::Killed;
            inner.queue = VecDeque::new();
            inner.spill = None;
        }
        Self::changed(inner, &self.waker);
        fits
    }

    pub(super) fn close(&self) {
        let mut inner = self.lock();
        if inner.state == OutboxState::Open {
            inner.state = OutboxState::Closing;
        }
        Self::changed(inner, &self.waker);
    }

    /// Marks a change and wakes the task, but only on the first change since it last looked:
    /// a burst of lines for one connection costs one wake-up, not one per line.
    fn changed(mut inner: MutexGuard<'_, OutboxInner>, waker: &AtomicWaker) {
        let first = !std::mem::replace(&mut inner.changed, true);
        drop(inner);
        if first {
            waker.wake();
        }
    }

    /// Ready once something changed since the task last looked.
    pub(super) fn poll_changed(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Registered before looking: a change after the look finds the waker.
        self.waker.register(cx.waker());
        if std::mem::take(&mut self.lock().changed) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Takes everything queued, leaving the outbox with no buffer at all, and the state seen.
    /// With `coalesce`, the lines come as one buffer: a stream without vectored writes then
    /// still gets one write per batch.
    pub(super) fn take(&self, coalesce: bool) -> (VecDeque<BytesSlice>, OutboxState) {
        let mut inner = self.lock();
        inner.changed = false;
        let queue = std::mem::take(&mut inner.queue);
        let bytes = std::mem::replace(&mut inner.bytes, 0);
        inner.blocks = 0;
        inner.spill = None;
        let state = inner.state.clone();
        drop(inner);
        if coalesce && queue.len() > 1 {
            let mut buf = AppendOnlyBytes::with_capacity(bytes);
            for run in &queue {
                buf.push_slice(run);
            }
            return (VecDeque::from([buf.to_slice()]), state);
        }
        (queue, state)
    }

    /// The state, for a task still writing its last batch (what is queued stays queued).
    pub(super) fn state(&self) -> OutboxState {
        let mut inner = self.lock();
        inner.changed = false;
        inner.state.clone()
    }
}

/// Where outgoing lines are kept until written: the core's lines are copied, one after
/// another, into shared append-only blocks of [`LINES_BLOCK`] bytes, and each outbox holds runs
/// of them. Consecutive lines for one client are usually consecutive in the block (a busy room
/// sends everyone the same lines in the same order), so a burst costs its recipient one
/// reference to the block and is written as one iovec, instead of a reference count per line
/// per recipient (contended between the two sides of the handoff) and an iovec per line.
///
/// A block is freed once the last run in it is written. A client that stops reading gets its
/// own copies before its runs keep more than its SendQ's worth of shared blocks alive (see
/// [`Outbox::push`]).
pub(super) struct Lines<const BLOCK: usize = LINES_BLOCK> {
    block: AppendOnlyBytes,
}

impl<const BLOCK: usize> std::fmt::Debug for Lines<BLOCK> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lines")
            .field("used", &self.block.len())
            .finish()
    }
}

impl<const BLOCK: usize> Lines<BLOCK> {
    pub(super) fn new() -> Self {
        Lines {
            block: AppendOnlyBytes::with_capacity(BLOCK),
        }
    }

    /// Copies `line` into the current block (or a new one, when it is full) and returns it.
    pub(super) fn put(&mut self, line: &[u8]) -> BytesSlice {
        if self.block.capacity() - self.block.len() < line.len() {
            self.block = AppendOnlyBytes::with_capacity(BLOCK.max(line.len()));
        }
        let start = self.block.len();
        self.block.push_slice(line);
        self.block.slice(start..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(out: &VecDeque<BytesSlice>) -> Vec<&[u8]> {
        out.iter().map(|run| run.as_bytes()).collect()
    }

    #[test]
    fn outbox_kills_itself_past_its_cap() {
        let outbox = Outbox::default();
        let mut lines: Lines = Lines::new();
        assert!(outbox.push(&lines.put(b"12345"), 8));
        assert!(!outbox.push(&lines.put(b"6789"), 8));
        let (out, state) = outbox.take(false);
        assert_eq!(state, OutboxState::Killed);
        assert!(out.is_empty(), "a killed outbox drops its queue");
    }

    #[test]
    fn outbox_runs_consecutive_lines_together_and_keeps_no_buffer() {
        let outbox = Outbox::default();
        let mut lines: Lines = Lines::new();
        for line in [&b"a\r\n"[..], b"bc\r\n"] {
            assert!(outbox.push(&lines.put(line), 1024));
        }
        // A line for somebody else breaks the run; order is kept.
        let _other = lines.put(b"not yours\r\n");
        assert!(outbox.push(&lines.put(b"def\r\n"), 1024));
        let (out, state) = outbox.take(false);
        assert_eq!(state, OutboxState::Open);
        assert_eq!(runs(&out), [&b"a\r\nbc\r\n"[..], b"def\r\n"]);
        assert_eq!(outbox.lock().queue.capacity(), 0);
        assert_eq!(outbox.lock().bytes, 0);
        // Coalesced for streams that write one buffer at a time.
        assert!(outbox.push(&lines.put(b"g\r\n"), 1024));
        let _other = lines.put(b"not yours\r\n");
        assert!(outbox.push(&lines.put(b"h\r\n"), 1024));
        let (one, _) = outbox.take(true);
        assert_eq!(runs(&one), [&b"g\r\nh\r\n"[..]]);
    }

    #[test]
    fn lines_fill_a_block_then_start_another_and_free_the_old_one_when_written() {
        let mut lines: Lines = Lines::new();
        let line = [b'x'; 1000];
        let first = lines.put(&line);
        for _ in 1..LINES_BLOCK / line.len() {
            assert!(
                lines.put(&line).ptr_eq(&first),
                "same block while it has room"
            );
        }
        let next = lines.put(&line);
        assert!(!next.ptr_eq(&first), "a full block is left for a new one");
        assert_eq!(next.as_bytes(), line);
        // A line longer than a block gets a block of its own size.
        let long = vec![b'y'; LINES_BLOCK * 2];
        assert_eq!(lines.put(&long).as_bytes(), long);
        // Runs across blocks are not merged.
        let outbox = Outbox::default();
        assert!(outbox.push(&first, usize::MAX));
        assert!(outbox.push(&next, usize::MAX));
        assert_eq!(outbox.take(false).0.len(), 2);
    }

    #[test]
    fn a_stalled_client_with_sparse_lines_pins_few_shared_blocks() {
        let mut lines: Lines = Lines::new();
        let outbox = Outbox::default();
        let filler = [b'.'; 1000];
        let mut sent = Vec::new();
        let mut shared = Vec::new();
        for i in 0..20 {
            // Everybody else's traffic in between: each of our lines lands in a new block.
            for _ in 0..LINES_BLOCK / filler.len() {
                lines.put(&filler);
            }
            let line = format!("line {i}\r\n");
            let slice = lines.put(line.as_bytes());
            assert!(outbox.push(&slice, 4 * LINES_BLOCK));
            shared.push(slice);
            sent.extend_from_slice(line.as_bytes());
        }
        let (out, _) = outbox.take(false);
        let pinned = out
            .iter()
            .filter(|run| shared.iter().any(|s| s.ptr_eq(run)))
            .count();
        assert_eq!(
            pinned,
            1 + 4,
            "the first block, and the SendQ's worth of others"
        );
        assert_eq!(
            out.len(),
            pinned + 1,
            "the rest is copied into one run of its own"
        );
        let got: Vec<u8> = out.iter().flat_map(|run| run.iter().copied()).collect();
        assert_eq!(got, sent, "nothing lost, nothing reordered");
        // Taking the queue starts afresh: the next line is shared again.
        let next = lines.put(b"again\r\n");
        assert!(outbox.push(&next, usize::MAX));
        assert!(outbox.take(false).0[0].ptr_eq(&next));
        // A client merely behind in a busy room (most lines are for it) never copies, however
        // many blocks its queue spans.
        let mut blocks = Vec::new();
        for _ in 0..10 * LINES_BLOCK / filler.len() {
            let line = lines.put(&filler);
            if !blocks.iter().any(|b: &BytesSlice| b.ptr_eq(&line)) {
                blocks.push(line.clone());
            }
            assert!(outbox.push(&line, usize::MAX));
        }
        let (out, _) = outbox.take(false);
        assert!(blocks.len() >= 10, "{}", blocks.len());
        assert_eq!(out.len(), blocks.len(), "one shared run per block");
        assert!(out.iter().zip(&blocks).all(|(run, b)| run.ptr_eq(b)));
    }
}
