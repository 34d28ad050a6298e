//! How a promoter hears that a queue has a new earliest job: its wake channel.
//!
//! The scripts that may make a job the new head of `scheduled` publish its due time on the
//! queue's wake channel `p:{q}:wake` (the `wake` snippet in `lua/`). On one server that is a
//! classic `PUBLISH`, heard here on a classic pub/sub connection (`SUBSCRIBE` per queue, or
//! `PSUBSCRIBE p:{*}:wake` for every queue of a namespace). On a Redis Cluster it is a sharded
//! `SPUBLISH`: the channel carries the queue's hash tag, so the message stays on the shard that
//! owns the queue and is heard by an `SSUBSCRIBE` on that shard, which the cluster connection
//! routes (and moves with the slot). A queue's very first job also sends one classic `PUBLISH`
//! on a cluster, which the cluster delivers everywhere, so that a promoter of a whole
//! namespace (subscribed to the classic pattern) finds a new queue at once.

use std::time::Duration;

use futures_util::StreamExt;
use redis::{PushInfo, PushKind, RedisResult, Value};
use tokio::sync::mpsc;

use crate::conn::Backend;

/// What a [`Listener`] heard.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Heard {
    /// A message on this channel, with its payload.
    Wake(String, String),
    /// This shard channel lost its subscription (its slot moved): subscribe it again and sweep
    /// its queue, a message may have been missed.
    Moved(String),
    /// The connection dropped and came back (cluster): messages may have been missed.
    Gap,
    /// The connection is gone: open a new listener.
    Closed,
}

/// A subscription to wake channels.
pub(crate) enum Listener {
    /// One server: a classic pub/sub connection.
    Single(redis::aio::PubSubStream),
    /// A cluster: sharded subscriptions on a RESP3 cluster connection; its pushes arrive on
    /// `pushes`.
    Cluster {
        conn: redis::cluster_async::ClusterConnection,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
    },
}

impl Listener {
    /// Subscribes to `channels`, and to `pattern` (classic: every queue of a namespace) if
    /// given. Times out after 5 s.
    pub(crate) async fn open(
        backend: &Backend,
        channels: Vec<String>,
        pattern: Option<String>,
    ) -> RedisResult<Listener> {
        let connect = async {
            let (sender, pushes) = mpsc::unbounded_channel();
            if let Some(conn) = backend.cluster_push_conn(sender).await {
                let mut conn = conn?;
                if let Some(pattern) = &pattern {
                    conn.psubscribe(pattern).await?;
                }
                for channel in &channels {
                    conn.ssubscribe(channel).await?;
                }
                return Ok(Listener::Cluster { conn, pushes });
            }
            let Some(client) = backend.single_client().await else {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "no connection to subscribe with",
                )));
            };
            let client = client?;
            let mut pubsub = client.get_async_pubsub().await?;
            match pattern {
                // The pattern covers every queue, so channels are not subscribed one by one.
                Some(pattern) => pubsub.psubscribe(pattern).await?,
                None => {
                    for channel in channels {
                        pubsub.subscribe(channel).await?;
                    }
                }
            }
            Ok(Listener::Single(pubsub.into_on_message()))
        };
        match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(result) => result,
            Err(_) => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "timed out subscribing to wake channels",
            ))),
        }
    }

    /// Listens to one more channel. On one server a listener of a namespace hears every
    /// channel through its pattern already, so this only subscribes on a cluster.
    pub(crate) async fn add(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Listener::Single(_) => Ok(()),
            Listener::Cluster { conn, .. } => conn.ssubscribe(channel).await,
        }
    }

    /// The next thing heard; pending forever when there is nothing to hear.
    pub(crate) async fn next(&mut self) -> Heard {
        match self {
            Listener::Single(stream) => match stream.next().await {
                Some(msg) => Heard::Wake(
                    msg.get_channel_name().to_owned(),
                    msg.get_payload::<String>().unwrap_or_default(),
                ),
                None => Heard::Closed,
            },
            Listener::Cluster { pushes, .. } => loop {
                let Some(push) = pushes.recv().await else {
                    return Heard::Closed;
                };
                if let Some(heard) = Heard::of_push(push) {
                    return heard;
                }
            },
        }
    }
}

impl Heard {
    /// What a cluster push means here; `None` for confirmations of our own subscriptions.
    fn of_push(push: PushInfo) -> Option<Heard> {
        let text = |v: Option<&Value>| match v {
            Some(Value::BulkString(b)) => String::from_utf8(b.clone()).ok(),
            Some(Value::SimpleString(s)) => Some(s.clone()),
            _ => None,
        };
        match push.kind {
            // [channel, message]
            PushKind::SMessage | PushKind::Message => text(push.data.first())
                .map(|channel| Heard::Wake(channel, text(push.data.get(1)).unwrap_or_default())),
            // [pattern, channel, message]
            PushKind::PMessage => text(push.data.get(1))
                .map(|channel| Heard::Wake(channel, text(push.data.get(2)).unwrap_or_default())),
            // We never unsubscribe: the server dropped the subscription (slot migrated).
            PushKind::SUnsubscribe => text(push.data.first()).map(Heard::Moved),
            PushKind::Disconnection => Some(Heard::Gap),
            _ => None,
        }
    }
}

/// Waits for what `listener` hears; pending forever without one.
pub(crate) async fn next(listener: &mut Option<Listener>) -> Heard {
    match listener {
        Some(l) => l.next().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(kind: PushKind, data: &[&str]) -> PushInfo {
        PushInfo {
            kind,
            data: data
                .iter()
                .map(|s| Value::BulkString(s.as_bytes().to_vec()))
                .collect(),
        }
    }

    #[test]
    fn pushes_are_read_as_wakes_moves_and_gaps() {
        let of = Heard::of_push;
        assert_eq!(
            of(push(PushKind::SMessage, &["p:{q}:wake", "17"])),
            Some(Heard::Wake("p:{q}:wake".into(), "17".into()))
        );
        assert_eq!(
            of(push(PushKind::PMessage, &["p:{*}:wake", "p:{r}:wake", "1"])),
            Some(Heard::Wake("p:{r}:wake".into(), "1".into()))
        );
        assert_eq!(
            of(push(PushKind::SUnsubscribe, &["p:{q}:wake", "0"])),
            Some(Heard::Moved("p:{q}:wake".into()))
        );
        assert_eq!(of(push(PushKind::Disconnection, &[])), Some(Heard::Gap));
        assert_eq!(of(push(PushKind::SSubscribe, &["p:{q}:wake", "1"])), None);
    }
}
