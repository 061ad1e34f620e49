//! Group commit for new tips: concurrent submissions are gathered into one transaction, so
//! every tip is durably committed before its receipt is shown, at one fsync per batch.

use super::{NewTipRecord, Store, StoreResult};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

const MAX_BATCH: usize = 256;

struct Job {
    tip: NewTipRecord,
    done: oneshot::Sender<StoreResult<()>>,
}

/// The handle intake uses to commit new tips.
#[derive(Clone)]
pub struct TipWriter {
    tx: mpsc::Sender<Job>,
}

impl TipWriter {
    /// Starts `workers` batching tasks over the store (1 suits SQLite's single writer).
    pub fn spawn(store: Store, workers: usize) -> TipWriter {
        let (tx, rx) = mpsc::channel::<Job>(MAX_BATCH * 16);
        let rx = Arc::new(Mutex::new(rx));
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
                    commit(&store, &mut jobs).await;
                }
            });
        }
        TipWriter { tx }
    }

    /// Commits one tip; returns once it is durable (or failed).
    pub async fn insert(&self, tip: NewTipRecord) -> StoreResult<()> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job { tip, done })
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        wait.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

async fn commit(store: &Store, jobs: &mut Vec<Job>) {
    let batch: Vec<&NewTipRecord> = jobs.iter().map(|j| &j.tip).collect();
    let result = store.insert_tips(&batch).await;
    match result {
        Ok(()) => {
            for job in jobs.drain(..) {
                let _ = job.done.send(Ok(()));
            }
        }
        Err(err) if jobs.len() == 1 => {
            let job = jobs.pop().expect("one job");
            let _ = job.done.send(Err(err));
        }
        Err(_) => {
            // One bad tip must not fail the others: retry each on its own.
            for job in jobs.drain(..) {
                let r = store.insert_tips(&[&job.tip]).await;
                let _ = job.done.send(r);
            }
        }
    }
}
