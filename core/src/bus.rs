//! The embedded bus: bounded in-process channels that carry batches between stages.
//!
//! A stage sees a [`Publisher`] for its output and a [`Subscriber`] for its input and
//! never knows what connects them; the Kafka bus offers the same two halves. Batches
//! (not single records) cross the channel so the per-message synchronisation cost is
//! paid once per batch, and the bound gives back-pressure: a slow sink slows the
//! parser instead of growing memory.

use std::sync::mpsc;

use crate::error::CoreError;

/// Sending half of a bus channel.
#[derive(Debug)]
pub struct Publisher<T> {
    name: &'static str,
    tx: mpsc::SyncSender<Vec<T>>,
}

impl<T> Clone for Publisher<T> {
    fn clone(&self) -> Self {
        Self {
            name: self.name,
            tx: self.tx.clone(),
        }
    }
}

/// Receiving half of a bus channel.
#[derive(Debug)]
pub struct Subscriber<T> {
    rx: mpsc::Receiver<Vec<T>>,
}

/// A bounded channel named `name` holding at most `batches` batches in flight.
pub fn channel<T>(name: &'static str, batches: usize) -> (Publisher<T>, Subscriber<T>) {
    let (tx, rx) = mpsc::sync_channel(batches.max(1));
    (Publisher { name, tx }, Subscriber { rx })
}

impl<T> Publisher<T> {
    /// Sends one batch, blocking while the channel is full. Empty batches are not sent.
    pub fn publish(&self, batch: Vec<T>) -> Result<(), CoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.tx
            .send(batch)
            .map_err(|_| CoreError::BusClosed(self.name))
    }
}

impl<T> Subscriber<T> {
    /// The next batch, or `None` once every publisher is dropped and the channel is drained.
    pub fn next_batch(&self) -> Option<Vec<T>> {
        self.rx.recv().ok()
    }
}

impl<T> Iterator for Subscriber<T> {
    type Item = Vec<T>;
    fn next(&mut self) -> Option<Vec<T>> {
        self.next_batch()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_arrive_in_order_and_channel_closes() {
        let (tx, rx) = channel::<u32>("test", 2);
        let h = std::thread::spawn(move || {
            for i in 0..10 {
                tx.publish(vec![i, i + 100]).unwrap();
            }
            tx.publish(Vec::new()).unwrap();
        });
        let got: Vec<u32> = rx.flatten().collect();
        h.join().unwrap();
        assert_eq!(got.len(), 20);
        assert_eq!(got[0], 0);
        assert_eq!(got[19], 109);
    }

    #[test]
    fn publishing_to_a_dropped_subscriber_is_an_error() {
        let (tx, rx) = channel::<u32>("gone", 1);
        drop(rx);
        assert!(matches!(
            tx.publish(vec![1]),
            Err(CoreError::BusClosed("gone"))
        ));
    }
}
