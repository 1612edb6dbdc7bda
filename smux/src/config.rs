//! Session configuration (docs/wire-format.md#smux-config).

use std::time::Duration;

/// Protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Version {
    /// smux v1: no per-stream flow control; the session token bucket is the only limit.
    /// Go's default.
    #[default]
    V1,
    /// smux v2: per-stream windows with UPD frames (docs/wire-format.md#smux-v2-window).
    V2,
    /// Server only: speak whatever version the peer's first frame carries. A first frame
    /// that is not a plausible smux header fails the session with
    /// [`Error::NotSmuxPeer`](crate::Error::NotSmuxPeer).
    Auto,
}

impl Version {
    /// The version byte on the wire, or `None` for [`Version::Auto`].
    pub fn byte(self) -> Option<u8> {
        match self {
            Version::V1 => Some(1),
            Version::V2 => Some(2),
            Version::Auto => None,
        }
    }
}

/// Tunables of a session. `Config::default()` equals Go's `DefaultConfig()` (E.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Protocol version; both ends must agree (or the server uses [`Version::Auto`]).
    /// Default V1, as Go.
    pub version: Version,
    /// Disables keepalive entirely (no NOPs, no timeout). Default false.
    pub keep_alive_disabled: bool,
    /// How often a NOP is sent. Default 10 s (Go).
    pub keep_alive_interval: Duration,
    /// The session is closed if no frame arrived during a whole period of this length
    /// (unless reading is paused by back-pressure, as in Go). Default 30 s.
    pub keep_alive_timeout: Duration,
    /// Largest PSH payload we send. Default 32768 (Go); at most 65535 (the length field).
    pub max_frame_size: usize,
    /// Session-wide receive buffer (token bucket, E.4): once this many received bytes are
    /// waiting to be read, we stop reading the transport. Default 4 MiB (Go).
    pub max_receive_buffer: usize,
    /// v2: the window we advertise per stream (Go always advertises exactly this). With
    /// [`stream_window_autotune`](Self::stream_window_autotune) it is where the window
    /// starts (at most 64 KiB). Default 65536 (Go).
    ///
    /// Either way the advertised window is capped to a fair share of
    /// `max_receive_buffer` (divided by the live streams, at least 4 KiB), so the
    /// windows of all streams together stay within the receive buffer.
    pub max_stream_buffer: usize,
    /// v2: start each stream's advertised window at `min(64 KiB, max_stream_buffer)` and
    /// double it whenever the window is what limits the stream (the reader drained
    /// everything and the sender used the whole window), up to `max_receive_buffer`
    /// (and the fair share of it when several streams are live). One stream can so fill
    /// a long fat link with the default config, while idle or slow streams keep small
    /// windows. The window is only a number in UPD, so Go peers are unaffected.
    /// Default true; with false the window is always `max_stream_buffer` (capped to the
    /// fair share), as Go.
    pub stream_window_autotune: bool,
    /// v2: the peer's session receive buffer (its `max_receive_buffer`; Go's
    /// `MaxReceiveBuffer`, kcptun's `--smuxbuf`). The bytes we have sent on all streams
    /// and the peer has not reported consumed stay below this, so the peer never stops
    /// reading its transport because of our data — which is what keeps our window
    /// updates from getting stuck behind it (the many-stream deadlock; see the crate
    /// docs). Set it to the peer's value: larger brings the deadlock risk back with Go
    /// peers, smaller only limits the session to this many bytes per round trip.
    /// Default 4 MiB (Go's default).
    pub peer_receive_buffer: usize,
    /// Streams opened by the peer and not yet accepted. When the backlog is full we stop
    /// reading the transport (Go's recvLoop blocks the same way). Default 1024 (Go).
    pub accept_backlog: usize,
    /// Bytes a stream may have committed by writes but not yet handed to the transport.
    /// A write blocks beyond this (like a full socket send buffer); in v2 the peer's
    /// window limits it further. Default 256 KiB.
    pub max_stream_send_buffer: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: Version::V1,
            keep_alive_disabled: false,
            keep_alive_interval: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(30),
            max_frame_size: 32768,
            max_receive_buffer: 4_194_304,
            max_stream_buffer: 65536,
            stream_window_autotune: true,
            peer_receive_buffer: 4_194_304,
            accept_backlog: 1024,
            max_stream_send_buffer: 256 * 1024,
        }
    }
}

/// Why a [`Config`] was rejected (Go's `VerifyConfig`, plus our own fields).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Keepalive is enabled with a zero interval. Set an interval or disable keepalive.
    #[error("keep-alive interval must be positive")]
    KeepAliveIntervalZero,
    /// The timeout is shorter than the interval, so a healthy session would time out.
    /// (kcptun's `--keepalive` above 30 fails this way.)
    #[error("keep-alive timeout must be larger than keep-alive interval")]
    KeepAliveTimeoutTooShort,
    /// `max_frame_size` is 0 or above 65535 (the 16-bit length field).
    #[error("max frame size must be in 1..=65535, got {0}")]
    FrameSize(usize),
    /// `max_receive_buffer` is 0 or does not fit the 31-bit token bucket.
    #[error("max receive buffer must be in 1..=2147483647, got {0}")]
    ReceiveBuffer(usize),
    /// `peer_receive_buffer` is 0 or does not fit the 31-bit token bucket.
    #[error("peer receive buffer must be in 1..=2147483647, got {0}")]
    PeerReceiveBuffer(usize),
    /// `max_stream_buffer` is 0, above `max_receive_buffer` or above 2^31-1.
    #[error("max stream buffer must be in 1..=min(max receive buffer, 2147483647), got {0}")]
    StreamBuffer(usize),
    /// `accept_backlog` is 0: no stream could ever be accepted.
    #[error("accept backlog must be positive")]
    AcceptBacklogZero,
    /// `max_stream_send_buffer` is 0: no write could ever complete.
    #[error("max stream send buffer must be positive")]
    SendBufferZero,
    /// [`Version::Auto`] on a client: the client speaks first and must know its version.
    #[error("version auto-detection is only possible on the server side")]
    AutoVersionOnClient,
}

impl Config {
    /// Checks the configuration like Go's `VerifyConfig` (E.2).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.keep_alive_disabled {
            if self.keep_alive_interval.is_zero() {
                return Err(ConfigError::KeepAliveIntervalZero);
            }
            if self.keep_alive_timeout < self.keep_alive_interval {
                return Err(ConfigError::KeepAliveTimeoutTooShort);
            }
        }
        if self.max_frame_size == 0 || self.max_frame_size > 65535 {
            return Err(ConfigError::FrameSize(self.max_frame_size));
        }
        if self.max_receive_buffer == 0 || self.max_receive_buffer > i32::MAX as usize {
            return Err(ConfigError::ReceiveBuffer(self.max_receive_buffer));
        }
        if self.peer_receive_buffer == 0 || self.peer_receive_buffer > i32::MAX as usize {
            return Err(ConfigError::PeerReceiveBuffer(self.peer_receive_buffer));
        }
        if self.max_stream_buffer == 0
            || self.max_stream_buffer > self.max_receive_buffer
            || self.max_stream_buffer > i32::MAX as usize
        {
            return Err(ConfigError::StreamBuffer(self.max_stream_buffer));
        }
        if self.accept_backlog == 0 {
            return Err(ConfigError::AcceptBacklogZero);
        }
        if self.max_stream_send_buffer == 0 {
            return Err(ConfigError::SendBufferZero);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_go_defaults_and_valid() {
        let c = Config::default();
        assert_eq!(c.version, Version::V1);
        assert_eq!(c.keep_alive_interval, Duration::from_secs(10));
        assert_eq!(c.keep_alive_timeout, Duration::from_secs(30));
        assert_eq!(c.max_frame_size, 32768);
        assert_eq!(c.max_receive_buffer, 4_194_304);
        assert_eq!(c.max_stream_buffer, 65536);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn validation() {
        let ok = Config::default();
        let check = |f: &dyn Fn(&mut Config), e: ConfigError| {
            let mut c = ok.clone();
            f(&mut c);
            assert_eq!(c.validate(), Err(e));
        };
        check(
            &|c| c.keep_alive_interval = Duration::ZERO,
            ConfigError::KeepAliveIntervalZero,
        );
        check(
            &|c| c.keep_alive_timeout = Duration::from_secs(5),
            ConfigError::KeepAliveTimeoutTooShort,
        );
        check(&|c| c.max_frame_size = 0, ConfigError::FrameSize(0));
        check(&|c| c.max_frame_size = 65536, ConfigError::FrameSize(65536));
        check(&|c| c.max_receive_buffer = 0, ConfigError::ReceiveBuffer(0));
        check(
            &|c| c.peer_receive_buffer = 0,
            ConfigError::PeerReceiveBuffer(0),
        );
        check(&|c| c.max_stream_buffer = 0, ConfigError::StreamBuffer(0));
        check(
            &|c| c.max_stream_buffer = 4_194_305,
            ConfigError::StreamBuffer(4_194_305),
        );
        check(&|c| c.accept_backlog = 0, ConfigError::AcceptBacklogZero);
        check(
            &|c| c.max_stream_send_buffer = 0,
            ConfigError::SendBufferZero,
        );
        let mut c = ok.clone();
        c.keep_alive_disabled = true;
        c.keep_alive_interval = Duration::ZERO;
        assert_eq!(c.validate(), Ok(()));
        let mut c = ok;
        c.max_frame_size = 65535;
        assert_eq!(c.validate(), Ok(()));
    }
}
