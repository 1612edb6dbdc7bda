//! The endpoint's routing for the AEAD kinds (Rust peers only): every datagram names the session it belongs
//! to (the client's 16-byte session id, sent in clear and bound into the keys), so a datagram is opened by
//! that session's own opener — per-direction keys, a replay window — before anything else is believed.
//!
//! A datagram with an unknown id is a session start only if its id is fresh: its creation time within the
//! [`FreshnessRecord`]'s window and never seen before (the record holds every id of the window). So in this
//! mode no replay creates, moves or feeds anything: a replayed start is refused by the record, a replayed
//! datagram of a live session by its replay window, and a session follows its peer to a new address only on a
//! datagram newer than any it opened.

use std::collections::HashMap;

use rkcp_crypt::{
    CryptError, FreshnessRecord, Opened, PacketCrypt, Refusal, SessionId, SessionOpener,
    SessionSealer, peek_session_id,
};

use crate::proto::endpoint::ConnHandle;
use crate::proto::packet::DropReason;

/// A datagram opened by [`Keyed::open`].
pub(crate) enum KeyedOpen {
    /// Of a live session.
    Known(ConnHandle, Opened),
    /// A fresh session start that authenticated: its halves, to keep if the session is created.
    New {
        id: SessionId,
        sealer: SessionSealer,
        opener: SessionOpener,
        opened: Opened,
    },
}

/// Sessions by client session id, with their openers, and the freshness record.
pub(crate) struct Keyed {
    crypt: PacketCrypt,
    by_id: HashMap<SessionId, (ConnHandle, SessionOpener)>,
    ids: HashMap<ConnHandle, SessionId>,
    fresh: FreshnessRecord,
}

impl std::fmt::Debug for Keyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyed")
            .field("sessions", &self.by_id.len())
            .field("remembered", &self.fresh.len())
            .finish()
    }
}

impl Keyed {
    /// `None` unless `crypt` is an AEAD kind.
    pub(crate) fn new(crypt: &PacketCrypt, now_unix_ms: u64) -> Option<Keyed> {
        crypt.kind().is_authenticated().then(|| Keyed {
            crypt: crypt.clone(),
            by_id: HashMap::new(),
            ids: HashMap::new(),
            fresh: FreshnessRecord::new(now_unix_ms),
        })
    }

    /// Opens `pkt` in place with its session's opener, or, for an unknown fresh id, with a new server session.
    pub(crate) fn open(
        &mut self,
        pkt: &mut [u8],
        now_unix_ms: u64,
    ) -> Result<KeyedOpen, DropReason> {
        let id = peek_session_id(pkt).ok_or(DropReason::Short)?;
        if let Some((h, opener)) = self.by_id.get_mut(&id) {
            return match opener.open(pkt) {
                Ok(o) => Ok(KeyedOpen::Known(*h, o)),
                Err(e) => Err(reason(&e)),
            };
        }
        // Cheap refusals first: an id outside the window or already seen costs no cryptography.
        self.fresh.check(id, now_unix_ms).map_err(|r| match r {
            Refusal::Replayed => DropReason::Replayed,
            // Outside the window, before this listener started, or the record is full: random garbage lands
            // here too (its "id" carries a random time).
            _ => DropReason::NotFresh,
        })?;
        let (sealer, mut opener) = self.crypt.server_session(id, SessionId::now()).split();
        let opened = opener.open(pkt).map_err(|e| reason(&e))?;
        Ok(KeyedOpen::New {
            id,
            sealer,
            opener,
            opened,
        })
    }

    /// Keeps a created session's opener and remembers its id; `false` if the record refuses it (full).
    pub(crate) fn insert(
        &mut self,
        id: SessionId,
        h: ConnHandle,
        opener: SessionOpener,
        now_unix_ms: u64,
    ) -> bool {
        if self.fresh.check_and_insert(id, now_unix_ms).is_err() {
            return false;
        }
        self.by_id.insert(id, (h, opener));
        self.ids.insert(h, id);
        true
    }

    /// Forgets a closed session (its id stays in the record for the window).
    pub(crate) fn remove(&mut self, h: ConnHandle) {
        if let Some(id) = self.ids.remove(&h) {
            self.by_id.remove(&id);
        }
    }
}

fn reason(e: &CryptError) -> DropReason {
    match e {
        CryptError::TooShort { .. } => DropReason::Short,
        CryptError::Replayed { .. } => DropReason::Replayed,
        _ => DropReason::Checksum,
    }
}
