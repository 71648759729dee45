//! One lazily (re)connected Redis handle with a deadline on every command, shared by the
//! Redis-backed revocation list and session index.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::redis_topology::{Connector, RedisConn};

/// Why a command got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    /// Redis, or the connection to it, failed.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// No answer within the deadline.
    #[error("Redis did not answer within {0:?}")]
    TimedOut(Duration),
}

/// A connection (to one server, Sentinel's primary or a Cluster) opened on first use and
/// dropped after any failure, so the next command reconnects — through Sentinel, to whichever
/// server is the primary by then.
pub(crate) struct LazyConn {
    client: Arc<Connector>,
    // A cloned-out handle; the lock is never held across an await.
    conn: Mutex<Option<RedisConn>>,
    timeout: Duration,
}

impl LazyConn {
    pub(crate) fn new(client: Arc<Connector>, timeout: Duration) -> LazyConn {
        LazyConn {
            client,
            conn: Mutex::new(None),
            timeout,
        }
    }

    async fn connection(&self) -> redis::RedisResult<RedisConn> {
        if let Some(c) = self.conn.lock().clone() {
            return Ok(c);
        }
        let c = self.client.open(self.timeout, self.timeout).await?;
        *self.conn.lock() = Some(c.clone());
        Ok(c)
    }

    /// Drops the connection, so the next command reconnects (after a failover).
    pub(crate) fn reset(&self) {
        *self.conn.lock() = None;
    }

    /// Runs `cmd` within the deadline. Any failure (including the deadline) drops the
    /// connection, so the next command reconnects.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: redis::Cmd,
    ) -> Result<T, ConnError> {
        let fut = async {
            let mut conn = self.connection().await?;
            cmd.query_async::<T>(&mut conn).await
        };
        let error = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => ConnError::Redis(e),
            Err(_) => ConnError::TimedOut(self.timeout),
        };
        *self.conn.lock() = None;
        Err(error)
    }
}
