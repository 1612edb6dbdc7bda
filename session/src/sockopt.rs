//! Socket options from the config: DSCP and buffer sizes (docs/wire-format.md#session-options).

use socket2::SockRef;
use tokio::net::UdpSocket;

use crate::config::KcpConfig;
use crate::error::SessionError;

/// Applies `cfg.socket` (`dscp`, `recv_buffer`, `send_buffer`) to `sock`.
pub(crate) fn apply(sock: &UdpSocket, cfg: &KcpConfig) -> Result<(), SessionError> {
    if let Some(d) = cfg.socket.dscp {
        set_dscp(sock, d)?;
    }
    let r = SockRef::from(sock);
    if let Some(n) = cfg.socket.recv_buffer {
        r.set_recv_buffer_size(n)?;
    }
    if let Some(n) = cfg.socket.send_buffer {
        r.set_send_buffer_size(n)?;
    }
    Ok(())
}

/// kcp-go `SetDSCP`: IPv4 `IP_TOS = dscp << 2`, IPv6 traffic class `dscp` (not shifted); succeeds if either
/// works.
pub(crate) fn set_dscp(sock: &UdpSocket, dscp: u32) -> Result<(), SessionError> {
    if dscp > 63 {
        return Err(crate::error::ConfigError::Dscp(dscp).into());
    }
    let r = SockRef::from(sock);
    let v4 = r.set_tos_v4(dscp << 2);
    let v6 = r.set_tclass_v6(dscp);
    match (v4, v6) {
        (Ok(()), _) | (_, Ok(())) => Ok(()),
        (Err(e), _) => Err(e.into()),
    }
}
