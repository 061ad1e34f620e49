//! Group commit: concurrent writers hand their rows to a batching task that commits many
//! in one transaction, so each row is durable before its caller is answered, at one fsync
//! per batch. New tips and accepted provider events go through it.

use super::{NewInboxEvent, NewTipRecord, Store, StoreError, StoreResult};
use futures_util::future::BoxFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

const MAX_BATCH: usize = 256;

/// Commits a batch; one result per item, in order.
type CommitFn<T, R> = for<'a> fn(&'a Store, &'a [&'a T]) -> BoxFuture<'a, StoreResult<Vec<R>>>;

struct Job<T, R> {
    item: T,
    done: oneshot::Sender<StoreResult<R>>,
}

/// A handle to a group-commit queue. Cheap to clone.
pub struct GroupCommit<T, R> {
    tx: mpsc::Sender<Job<T, R>>,
    /// Items submitted and not yet answered.
    pending: Arc<AtomicUsize>,
}

impl<T, R> Clone for GroupCommit<T, R> {
    fn clone(&self) -> Self {
        GroupCommit {
            tx: self.tx.clone(),
            pending: self.pending.clone(),
        }
    }
}

impl<T: Send + Sync + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// Starts `workers` batching tasks (1 suits SQLite's single writer).
    fn spawn(store: Store, workers: usize, commit: CommitFn<T, R>) -> Self {
        let (tx, rx) = mpsc::channel::<Job<T, R>>(MAX_BATCH * 16);
        let rx = Arc::new(Mutex::new(rx));
        let store = store.for_writers();
        for _ in 0..workers.max(1) {
            let rx = rx.clone();
            let store = store.clone();
            tokio::spawn(async move {
                let mut jobs = Vec::with_capacity(MAX_BATCH);
                loop {
                    let got = rx.lock().await.recv_many(&mut jobs, MAX_BATCH).await;
                    if got == 0 {
                        break;
                    }
                    run_batch(&store, commit, &mut jobs).await;
                }
            });
        }
        GroupCommit {
            tx,
            pending: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Commits one item; returns once it is durable (or failed).
    async fn submit(&self, item: T) -> StoreResult<R> {
        struct Counted<'a>(&'a AtomicUsize);
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.pending.fetch_add(1, Ordering::Relaxed);
        let _counted = Counted(&self.pending);
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job { item, done })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        wait.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Items submitted and not yet committed.
    fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
}

async fn run_batch<T, R>(store: &Store, commit: CommitFn<T, R>, jobs: &mut Vec<Job<T, R>>) {
    let items: Vec<&T> = jobs.iter().map(|j| &j.item).collect();
    let result = commit(store, &items).await;
    drop(items);
    match result {
        Ok(results) if results.len() == jobs.len() => {
            for (job, r) in jobs.drain(..).zip(results) {
                let _ = job.done.send(Ok(r));
            }
        }
        Ok(results) => {
            let (expected, got) = (jobs.len(), results.len());
            for job in jobs.drain(..) {
                let _ = job
                    .done
                    .send(Err(StoreError::BatchMismatch { expected, got }));
            }
        }
        Err(err) if jobs.len() == 1 => {
            let job = jobs.pop().expect("one job");
            let _ = job.done.send(Err(err));
        }
        Err(_) => {
            // One bad row must not fail the others: retry each on its own.
            for job in jobs.drain(..) {
                let r = commit(store, &[&job.item]).await.and_then(|mut v| {
                    v.pop().ok_or(StoreError::BatchMismatch {
                        expected: 1,
                        got: 0,
                    })
                });
                let _ = job.done.send(r);
            }
        }
    }
}

/// Commits new tips in batches.
#[derive(Clone)]
pub struct TipWriter(GroupCommit<NewTipRecord, ()>);

impl TipWriter {
    /// Starts `workers` batching tasks over the store (1 suits SQLite's single writer).
    pub fn spawn(store: Store, workers: usize) -> TipWriter {
        TipWriter(GroupCommit::spawn(store, workers, |s, tips| {
            Box::pin(async move { s.insert_tips(tips).await.map(|()| vec![(); tips.len()]) })
        }))
    }

    /// Commits one tip; returns once it is durable (or failed).
    pub async fn insert(&self, tip: NewTipRecord) -> StoreResult<()> {
        self.0.submit(tip).await
    }
}

/// Commits accepted provider events in batches, so a webhook answers only once its event
/// is on disk, at thousands of events a second.
#[derive(Clone)]
pub struct InboxWriter(GroupCommit<NewInboxEvent, ()>);

impl InboxWriter {
    /// Starts the batching tasks.
    pub fn spawn(store: Store, workers: usize) -> InboxWriter {
        InboxWriter(GroupCommit::spawn(store, workers, |s, events| {
            Box::pin(async move {
                s.insert_inbox(events)
                    .await
                    .map(|()| vec![(); events.len()])
            })
        }))
    }

    /// Stores one event among the arrivals (a retry too: the sorting into the inbox
    /// drops it).
    pub async fn insert(&self, event: NewInboxEvent) -> StoreResult<()> {
        self.0.submit(event).await
    }

    /// Events handed in and not yet on disk: webhooks waiting for their answer.
    pub fn pending(&self) -> usize {
        self.0.pending()
    }
}

/// Settles sent (or failed) outbox messages in batches: at thousands of messages a second
/// one transaction per message would be the bottleneck on SQLite.
#[derive(Clone)]
pub struct SettleWriter(GroupCommit<super::Settle, ()>);

impl SettleWriter {
    /// Starts the batching tasks.
    pub fn spawn(store: Store, workers: usize) -> SettleWriter {
        SettleWriter(GroupCommit::spawn(store, workers, |s, settles| {
            Box::pin(async move {
                s.settle_outbox(settles)
                    .await
                    .map(|()| vec![(); settles.len()])
            })
        }))
    }

    /// Writes one settlement; returns once it is durable.
    pub async fn settle(&self, settle: super::Settle) -> StoreResult<()> {
        self.0.submit(settle).await
    }
}
