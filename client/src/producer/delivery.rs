//! Delivery outcomes: one shared outcome per batch, and per record a small future that reads its offset from
//! it. Sending a record therefore costs no allocation and no channel of its own: the records of a batch are
//! acknowledged together, so they share one slot (as the Java client's records share their batch's result).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::types::RecordMetadata;

/// The outcome of one batch (its base offset, or why it failed), shared by the futures of its records.
pub(crate) struct BatchOutcome {
    topic: Arc<str>,
    partition: u32,
    result: OnceLock<Result<u64>>,
    /// Wakers of the record futures polled before the outcome was known; taken when it is set.
    waiters: Mutex<Vec<Waker>>,
}

impl BatchOutcome {
    fn new(topic: Arc<str>, partition: u32) -> BatchOutcome {
        BatchOutcome { topic, partition, result: OnceLock::new(), waiters: Mutex::new(Vec::new()) }
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, Vec<Waker>> {
        self.waiters.lock().expect("batch waiters lock poisoned")
    }

    /// Sets the outcome once and wakes every record future waiting for it; a later call changes nothing.
    fn set(&self, result: Result<u64>) {
        if self.result.set(result).is_err() {
            return;
        }
        // Taken after the result is visible: a future that registers from now on sees the result first.
        let waiters = std::mem::take(&mut *self.waiters());
        for waker in waiters {
            waker.wake();
        }
    }

    fn metadata(&self, index: u32, timestamp_ms: i64) -> Option<Result<RecordMetadata>> {
        let result = self.result.get()?;
        Some(match result {
            Ok(base_offset) => Ok(RecordMetadata {
                topic: self.topic.clone(),
                partition: self.partition,
                offset: base_offset + u64::from(index),
                timestamp_ms,
            }),
            Err(e) => Err(e.clone()),
        })
    }
}

/// The producer's side of a batch's outcome. Dropping it unset (the sender task ended without an answer,
/// which only a panic can cause) fails the batch's records with [`Error::ProducerClosed`].
pub(crate) struct BatchCompletion {
    outcome: Arc<BatchOutcome>,
}

impl BatchCompletion {
    pub fn new(topic: Arc<str>, partition: u32) -> BatchCompletion {
        BatchCompletion { outcome: Arc::new(BatchOutcome::new(topic, partition)) }
    }

    /// The future of the record at `index` in the batch.
    pub fn record(&self, index: u32, timestamp_ms: i64) -> DeliveryFuture {
        DeliveryFuture {
            state: State::Waiting { outcome: self.outcome.clone(), index, timestamp_ms, registered: None },
        }
    }

    pub fn succeed(self, base_offset: u64) {
        self.outcome.set(Ok(base_offset));
    }

    pub fn fail(self, error: Error) {
        self.outcome.set(Err(error));
    }
}

impl Drop for BatchCompletion {
    fn drop(&mut self) {
        self.outcome.set(Err(Error::ProducerClosed));
    }
}

/// Resolves to where a record was written, or to why it was not.
///
/// # Cancel safety
///
/// Dropping it does not cancel the send; the outcome is just not observed.
#[must_use = "a record's delivery can fail; await the future to know"]
pub struct DeliveryFuture {
    state: State,
}

enum State {
    /// Failed before it joined a batch.
    Failed(Option<Error>),
    Waiting {
        outcome: Arc<BatchOutcome>,
        /// Position in the batch: the offset is the batch's base offset plus this.
        index: u32,
        timestamp_ms: i64,
        /// Where this future's waker sits in the outcome's waiters, once it has been polled.
        registered: Option<usize>,
    },
}

impl DeliveryFuture {
    pub(crate) fn failed(error: Error) -> DeliveryFuture {
        DeliveryFuture { state: State::Failed(Some(error)) }
    }

    /// The partition the record was put in, known as soon as `send` returns; `None` if the record failed
    /// before it joined a batch.
    pub fn partition(&self) -> Option<u32> {
        match &self.state {
            State::Failed(_) => None,
            State::Waiting { outcome, .. } => Some(outcome.partition),
        }
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            State::Failed(error) => {
                Poll::Ready(Err(error.take().expect("a DeliveryFuture is not polled after it completed")))
            }
            State::Waiting { outcome, index, timestamp_ms, registered } => {
                if let Some(result) = outcome.metadata(*index, *timestamp_ms) {
                    return Poll::Ready(result);
                }
                let mut waiters = outcome.waiters();
                // Checked again under the lock: `set` takes the waiters only after the result is visible.
                if let Some(result) = outcome.metadata(*index, *timestamp_ms) {
                    return Poll::Ready(result);
                }
                match *registered {
                    Some(at) if waiters[at].will_wake(cx.waker()) => {}
                    Some(at) => waiters[at] = cx.waker().clone(),
                    None => {
                        *registered = Some(waiters.len());
                        waiters.push(cx.waker().clone());
                    }
                }
                Poll::Pending
            }
        }
    }
}
