//! One lazily (re)connected Redis handle with a deadline on every command, shared by the
//! Redis-backed revocation list and session index.

use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;

use crate::revocation::RevocationError;

/// A multiplexed connection opened on first use and dropped after any failure, so the next
/// command reconnects.
pub(crate) struct LazyConn {
    client: redis::Client,
    // A cloned-out handle; the lock is never held across an await.
    conn: Mutex<Option<MultiplexedConnection>>,
    timeout: Duration,
}

impl LazyConn {
    pub(crate) fn new(client: redis::Client, timeout: Duration) -> LazyConn {
        LazyConn {
            client,
            conn: Mutex::new(None),
            timeout,
        }
    }

    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(c) = self.conn.lock().clone() {
            return Ok(c);
        }
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?;
        *self.conn.lock() = Some(c.clone());
        Ok(c)
    }

    /// Runs `cmd` within the deadline. Any failure (including the deadline) drops the
    /// connection and is reported as [`RevocationError::Unavailable`].
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: redis::Cmd,
    ) -> Result<T, RevocationError> {
        let fut = async {
            let mut conn = self.connection().await?;
            cmd.query_async::<T>(&mut conn).await
        };
        let result = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        *self.conn.lock() = None;
        Err(RevocationError::Unavailable(result))
    }
}
