//! The threads queries run on, and what keeps them free: a query's task is aborted when its
//! caller stops waiting, and the queries holding a permit are counted with their start time.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::task::{JoinError, JoinHandle};

/// Stack per level of nesting the guard allows. Planning recurses a few frames per level of an
/// expression tree (sqlparser's visitor, the SQL-to-plan conversion, the optimiser rules, the
/// derived `Drop`, `Hash` and `PartialEq`); DataFusion's own tree walks grow their stack on demand
/// (`recursive_protection`), the rest does not. Measured in the dev profile: a 1,000-term chain
/// of each operator plans and runs with 64 KiB per level; release frames are smaller.
const STACK_PER_LEVEL: usize = 64 * 1024;
const MIN_STACK: usize = 8 * 1024 * 1024;

/// The query runtime. Shut down in the background when dropped, which is allowed from inside
/// another runtime (a plain `Runtime` drop is not).
pub(super) struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl QueryRuntime {
    /// Threads with stacks sized for statements `max_depth` levels deep. The stack is reserved
    /// address space; only the pages a deep query touches are ever backed by memory.
    pub(super) fn new(max_depth: usize) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads())
            .thread_name("cruscotto-query")
            .thread_stack_size(stack_size(max_depth))
            .enable_all()
            .build()
            .expect("the query runtime starts");
        Self(Some(runtime))
    }
}

/// One query thread per core.
pub(super) fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn stack_size(max_depth: usize) -> usize {
    max_depth.saturating_mul(STACK_PER_LEVEL).max(MIN_STACK)
}

impl std::ops::Deref for QueryRuntime {
    type Target = tokio::runtime::Runtime;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("runtime present until drop")
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A spawned query that is aborted when no one waits for it any more: a `JoinHandle` dropped
/// alone would leave the task running to its end.
pub struct AbortOnDrop<T>(pub JoinHandle<T>);

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The start times of the queries executing now, and how many wait for a slot.
#[derive(Default)]
pub(super) struct RunningQueries {
    started: Mutex<Vec<(u64, Instant)>>,
    next_id: std::sync::atomic::AtomicU64,
    waiting: std::sync::atomic::AtomicUsize,
}

impl RunningQueries {
    /// Count a query as running until the returned guard is dropped (with its task).
    pub(super) fn start(&self) -> Running<'_> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.started
            .lock()
            .expect("running queries lock")
            .push((id, Instant::now()));
        Running { queries: self, id }
    }

    pub(super) fn count(&self) -> usize {
        self.started.lock().expect("running queries lock").len()
    }

    /// Count a query as waiting for a slot until the returned guard is dropped.
    pub(super) fn wait(&self) -> Waiting<'_> {
        self.waiting
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiting { queries: self }
    }

    pub(super) fn waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How long the most recently started query has been running: while every slot is taken,
    /// how long since a slot last turned over.
    pub(super) fn youngest(&self) -> Option<Duration> {
        self.started
            .lock()
            .expect("running queries lock")
            .iter()
            .map(|(_, started)| started.elapsed())
            .min()
    }

    /// How long the longest-running query has been running.
    pub(super) fn oldest(&self) -> Option<Duration> {
        self.started
            .lock()
            .expect("running queries lock")
            .iter()
            .map(|(_, started)| started.elapsed())
            .max()
    }
}

pub(super) struct Running<'a> {
    queries: &'a RunningQueries,
    id: u64,
}

pub(super) struct Waiting<'a> {
    queries: &'a RunningQueries,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.queries
            .waiting
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.queries
            .started
            .lock()
            .expect("running queries lock")
            .retain(|(id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_grow_with_the_depth_allowed() {
        assert_eq!(stack_size(10), MIN_STACK);
        assert_eq!(stack_size(1000), 1000 * STACK_PER_LEVEL);
        assert!(stack_size(usize::MAX) > 0);
    }

    #[tokio::test]
    async fn a_dropped_query_task_is_aborted() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = AbortOnDrop(tokio::spawn(async move {
            let _keep = tx;
            std::future::pending::<()>().await
        }));
        drop(task);
        // The task's captures are dropped when it is aborted: the channel closes.
        assert!(rx.await.is_err());
    }

    #[test]
    fn running_queries_are_counted_until_dropped() {
        let running = RunningQueries::default();
        let first = running.start();
        let second = running.start();
        assert_eq!(running.count(), 2);
        drop(first);
        assert_eq!(running.count(), 1);
        assert!(running.oldest().is_some());
        drop(second);
        assert_eq!(running.oldest(), None);
        assert_eq!(running.youngest(), None);
    }

    #[test]
    fn waiting_queries_are_counted_until_dropped() {
        let running = RunningQueries::default();
        let first = running.wait();
        let second = running.wait();
        assert_eq!(running.waiting(), 2);
        drop(first);
        assert_eq!(running.waiting(), 1);
        drop(second);
        assert_eq!(running.waiting(), 0);
    }
}
