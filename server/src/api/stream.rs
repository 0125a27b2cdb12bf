//! Streaming a long answer (History, Query) in chunks: the producer runs on
//! a blocking thread (it scans storage), hands items to [`Chunks`] one by
//! one, and each [`CHUNK`] items go to the client as one message. A client
//! that goes away closes the channel; `push` then says so and the producer
//! stops scanning.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tonic::Status;

/// Items (readings, rows) per streamed message.
pub const CHUNK: usize = 1000;

/// Messages produced ahead of a slow client before the producer waits.
const CHANNEL_DEPTH: usize = 4;

/// The stream type of a streaming call.
pub type ResponseStream<M> = Pin<Box<dyn Stream<Item = Result<M, Status>> + Send>>;

/// Collects items and sends each full chunk as a message made by `wrap`.
pub struct Chunks<T, M, W> {
    tx: mpsc::Sender<Result<M, Status>>,
    pending: Vec<T>,
    /// Items per message.
    size: usize,
    wrap: W,
}

impl<T, M, W: FnMut(Vec<T>) -> M> Chunks<T, M, W> {
    /// Adds an item, sending the chunk when it is full. False when the
    /// client went away: stop producing.
    pub fn push(&mut self, item: T) -> bool {
        self.pending.push(item);
        if self.pending.len() < self.size {
            return true;
        }
        let items = std::mem::replace(&mut self.pending, Vec::with_capacity(self.size));
        self.tx.blocking_send(Ok((self.wrap)(items))).is_ok()
    }

    /// Whether items are waiting for a message.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The waiting items (possibly none) as a message, for the producer's
    /// last one.
    pub fn take_rest(&mut self) -> M {
        (self.wrap)(std::mem::take(&mut self.pending))
    }
}

/// Runs `produce` on a blocking thread and streams what it pushes, in
/// messages of [`CHUNK`] items made by `wrap`; the message or error
/// `produce` returns, if any, ends the stream.
pub fn chunked<T, M, W, P>(wrap: W, produce: P) -> ResponseStream<M>
where
    T: Send + 'static,
    M: Send + 'static,
    W: FnMut(Vec<T>) -> M + Send + 'static,
    P: FnOnce(&mut Chunks<T, M, W>) -> Option<Result<M, Status>> + Send + 'static,
{
    chunked_by(CHUNK, wrap, produce)
}

/// [`chunked`] with `size` items per message.
pub fn chunked_by<T, M, W, P>(size: usize, wrap: W, produce: P) -> ResponseStream<M>
where
    T: Send + 'static,
    M: Send + 'static,
    W: FnMut(Vec<T>) -> M + Send + 'static,
    P: FnOnce(&mut Chunks<T, M, W>) -> Option<Result<M, Status>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    tokio::task::spawn_blocking(move || {
        let mut chunks = Chunks {
            tx,
            pending: Vec::with_capacity(size),
            size: size.max(1),
            wrap,
        };
        if let Some(last) = produce(&mut chunks) {
            let _ = chunks.tx.blocking_send(last);
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn items_arrive_in_full_chunks_then_the_last_message() {
        let stream = chunked(
            |items: Vec<usize>| items,
            |out| {
                for i in 0..2 * CHUNK + 3 {
                    assert!(out.push(i));
                }
                Some(Ok(out.take_rest()))
            },
        );
        let sizes: Vec<usize> = stream.map(|m| m.unwrap().len()).collect().await;
        assert_eq!(sizes, vec![CHUNK, CHUNK, 3]);
    }

    #[tokio::test]
    async fn producer_stops_when_the_client_goes_away() {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let stream = chunked(
            |items: Vec<usize>| items,
            move |out| {
                let mut pushed = 0;
                while out.push(pushed) {
                    pushed += 1;
                }
                let _ = done_tx.send(pushed);
                None
            },
        );
        drop(stream);
        let pushed = done_rx.await.unwrap();
        // At most the channel's depth plus one chunk fit before the send fails.
        assert!(pushed < (CHANNEL_DEPTH + 2) * CHUNK, "pushed {pushed}");
    }

    #[tokio::test]
    async fn an_error_ends_the_stream_after_the_chunks_sent() {
        let stream = chunked(
            |items: Vec<usize>| items,
            |out| {
                for i in 0..CHUNK + 1 {
                    out.push(i);
                }
                Some(Err(Status::internal("disk")))
            },
        );
        let got: Vec<_> = stream.collect().await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap().len(), CHUNK);
        assert_eq!(got[1].as_ref().unwrap_err().message(), "disk");
    }
}
