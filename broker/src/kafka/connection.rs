//! One Kafka client connection: reads request frames and answers them in arrival order.
//!
//! Clients pipeline requests (up to 5 in flight by default), and Kafka answers them in order. Requests are
//! handled one at a time, in arrival order, so their effects (one producer's appends) follow that order too,
//! with one exception that keeps a producer's pipeline full: a Produce is answered once its acknowledgement
//! (acks=all: the HW passing its batches) arrives, and while it waits the connection reads and appends the
//! next Produces, up to `KAFKA_PRODUCE_PIPELINE_MAX` waiting at once. Any other request runs only after the
//! Produces before it are answered. Requests beyond that wait in the socket's buffer, which bounds what a
//! connection queues. A connection a quota holds reads nothing until the hold is over, though its answers
//! still go out.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::BrokerCore;
use super::dispatch::{Outcome, dispatch};
use super::frame::{FrameError, FrameReader};
use super::sasl::Session;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;

use crate::limits::{KAFKA_CONNECTION_IDLE_MS_MAX, KAFKA_PRODUCE_PIPELINE_MAX};
use crate::security::PeerIdentity;

/// Serves `stream` (plain TCP or TLS) until the client closes it, a request forces it closed, it idles past
/// the limit, or the broker shuts down (requests being handled are answered first). Every request is
/// dispatched with the connection's `identity`.
pub async fn serve_connection<S>(core: Arc<BrokerCore>, mut stream: S, identity: PeerIdentity)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let peer = identity.remote_addr.map_or_else(|| "unknown".to_string(), |a| a.to_string());
    let mut reader = FrameReader::new(frame_bytes_max(core.config.request_bytes_max));
    let mut session = Session::new(identity);
    let mut shutdown = core.shutdown.clone();
    let idle = Duration::from_millis(KAFKA_CONNECTION_IDLE_MS_MAX);
    // Produce requests whose batches are appended and whose acknowledgements are awaited, oldest first.
    let mut producing: FuturesOrdered<BoxFuture<'static, Outcome>> = FuturesOrdered::new();
    loop {
        let room = producing.len() < KAFKA_PRODUCE_PIPELINE_MAX;
        // A quota holds the connection: its next request stays in the socket until the hold is over.
        let held = session.held_until();
        let event = tokio::select! {
            // The frame reader keeps what it has read when this branch loses the race (cancel safe).
            next = tokio::time::timeout(idle, reader.next(&mut stream)), if room && held.is_none() => Event::Read(next),
            _ = tokio::time::sleep_until(held.unwrap_or_else(tokio::time::Instant::now)), if held.is_some() => continue,
            Some(outcome) = producing.next(), if !producing.is_empty() => Event::Answered(outcome),
            _ = shutdown.wait_for(|stopping| *stopping) => Event::ShuttingDown,
        };
        let frame = match event {
            Event::Answered(outcome) => match write(&mut stream, outcome).await {
                Ok(()) => continue,
                Err(why) => return tracing::debug!(%peer, "closing Kafka connection: {why}"),
            },
            Event::ShuttingDown => return drain(&mut stream, &mut producing).await.unwrap_or(()),
            Event::Read(Ok(Ok(Some(frame)))) => frame,
            Event::Read(Ok(Ok(None))) => return drain(&mut stream, &mut producing).await.unwrap_or(()),
            Event::Read(Ok(Err(FrameError::Io(e)))) => return tracing::debug!(%peer, "Kafka connection failed: {e}"),
            Event::Read(Ok(Err(e))) => return tracing::warn!(%peer, "closing Kafka connection: {e}"),
            Event::Read(Err(_)) => return tracing::debug!(%peer, "closing Kafka connection idle for {idle:?}"),
        };
        match dispatch(&core, &mut session, frame).await {
            // Appended already: the next request may be read while this one waits for its acknowledgement.
            Outcome::Pending(waiting) => producing.push_back(waiting),
            other => {
                // Anything but a Produce runs once the Produces before it are answered, as if one at a time.
                let answered = async {
                    drain(&mut stream, &mut producing).await?;
                    write(&mut stream, other).await
                };
                if let Err(why) = answered.await {
                    return tracing::warn!(%peer, "closing Kafka connection: {why}");
                }
            }
        }
    }
}

enum Event {
    Read(Result<Result<Option<bytes::Bytes>, FrameError>, tokio::time::error::Elapsed>),
    Answered(Outcome),
    ShuttingDown,
}

/// Writes an outcome's response; `Err` with the reason when the connection must close.
async fn write<W: AsyncWrite + Unpin + Send>(stream: &mut W, outcome: Outcome) -> Result<(), String> {
    match outcome {
        Outcome::Respond(response) => {
            stream.write_all(&response).await.map_err(|e| format!("cannot write to the connection: {e}"))
        }
        Outcome::Silent => Ok(()),
        Outcome::Close(why) => Err(why),
        Outcome::Pending(waiting) => Box::pin(write(stream, waiting.await)).await,
    }
}

/// Answers every pending Produce, in order.
async fn drain<W: AsyncWrite + Unpin + Send>(
    stream: &mut W,
    producing: &mut FuturesOrdered<BoxFuture<'static, Outcome>>,
) -> Result<(), String> {
    while let Some(outcome) = producing.next().await {
        write(stream, outcome).await?;
    }
    Ok(())
}

/// The largest frame accepted: the broker's request limit, and never above what Kafka's signed 32-bit size
/// prefix can say.
fn frame_bytes_max(request_bytes_max: u64) -> usize {
    usize::try_from(request_bytes_max).unwrap_or(usize::MAX).min(i32::MAX as usize)
}
