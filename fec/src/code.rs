//! The Reed–Solomon code of one (ds, ps) setting, as coefficient rows (docs/wire-format.md#fec-reed-solomon).
//!
//! `reed-solomon-erasure` (galois_8) is the source of truth: it builds the Backblaze systematic
//! Vandermonde matrix kcp-go's klauspost/reedsolomon uses, and inverts sub-matrices for
//! reconstruction. Since the code is linear, its coefficients are read back by running the crate
//! on unit vectors: encoding data shard `i = e_i` yields parity column `i`, and reconstructing
//! from present shard `k = e_k` yields decode column `k`. The hot loops then apply those
//! coefficients with [`crate::gf::mul_acc`], which handles ragged shard lengths without padding
//! copies. Unit tests check the result byte for byte against the crate's own `encode` and
//! `reconstruct_data`.
//!
//! Building a code inverts a ds × ds matrix (O(ds³)), and every session builds an encoder and a
//! decoder, an adaptive sender rebuilds one per parity change and a retuning receiver one per
//! retune. The immutable part (the crate's codec and the parity coefficients) is therefore shared
//! process-wide per (ds, ps) through a small most-recently-used table ([`tables`]); each [`Code`]
//! keeps its own decode-row cache. Sharing the codec also shares its internal cache of inverted
//! decode matrices, instead of one such cache per session.

use std::sync::{Arc, Mutex};

use reed_solomon_erasure::galois_8::ReedSolomon;

use crate::FecError;

/// The most shards a GF(2^8) code can have.
pub(crate) const MAX_TOTAL_SHARDS: usize = 256;
/// Bound on the coefficients kept in the decode-row cache (a peer chooses (ds, ps) through
/// autotune, so the cache must not grow with it): 64 Ki bytes, plus a small entry count.
const CACHE_MAX_COEFS: usize = 1 << 16;
const CACHE_MAX_ENTRIES: usize = 32;

/// A set of shard indices in one group (ds + ps <= 256).
pub(crate) type ShardSet = [u64; 4];

pub(crate) fn set_insert(set: &mut ShardSet, i: usize) {
    set[i / 64] |= 1 << (i % 64);
}

struct DecodeRows {
    /// Which shards (the first ds present ones) the rows apply to.
    key: ShardSet,
    /// One row of ds coefficients per missing data shard, in ascending shard order.
    rows: Vec<u8>,
}

/// The immutable part of one (ds, ps) code, shared by every [`Code`] of that setting.
pub(crate) struct Tables {
    ds: usize,
    ps: usize,
    rs: ReedSolomon,
    /// `columns[i * ps + j]`: coefficient of data shard `i` in parity shard `j`.
    columns: Vec<u8>,
}

/// Bounds on the (ds, ps) settings [`tables`] keeps, most recently used first out (evicted ones
/// live on in the codes still holding them): their coefficient bytes ([`Tables::weight`]; one
/// 255-shard setting nearly fills it, a 10/3 one takes 160 bytes) and their count (each also
/// holds the crate's decode-matrix cache, ~17 KiB allocated up front, up to 254 matrices when
/// used). A process normally uses one or two settings; the room for many small ones is for an
/// adaptive sender's or retuning peers' settings, and for the fuzz target, whose decoders take
/// any of 128 settings per input.
const SHARED_TABLES_MAX_WEIGHT: usize = 64 * 1024;
const SHARED_TABLES_MAX: usize = 128;

static SHARED_TABLES: Mutex<Vec<Arc<Tables>>> = Mutex::new(Vec::new());

/// The tables of (ds, ps): shared if built recently, else built and remembered. `ds` and `ps`
/// must already be valid.
fn tables(ds: usize, ps: usize) -> Result<Arc<Tables>, FecError> {
    // A poisoned lock only means another thread panicked while holding it; the list is valid.
    let lock = || {
        SHARED_TABLES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let find = |shared: &mut Vec<Arc<Tables>>| {
        let pos = shared.iter().position(|t| t.ds == ds && t.ps == ps)?;
        let hit = shared.remove(pos);
        shared.push(Arc::clone(&hit));
        Some(hit)
    };
    if let Some(hit) = find(&mut lock()) {
        return Ok(hit);
    }
    // Built outside the lock (a large setting takes milliseconds, and other sessions' settings
    // must not wait for it); a concurrent builder of the same setting may win, then its copy is used.
    let built = Arc::new(Tables::build(ds, ps)?);
    let mut shared = lock();
    if let Some(hit) = find(&mut shared) {
        return Ok(hit);
    }
    let mut weight: usize = shared.iter().map(|t| t.weight()).sum();
    while !shared.is_empty()
        && (shared.len() >= SHARED_TABLES_MAX || weight + built.weight() > SHARED_TABLES_MAX_WEIGHT)
    {
        weight -= shared.remove(0).weight();
    }
    shared.push(Arc::clone(&built));
    Ok(built)
}

impl Tables {
    /// The coefficient bytes: the crate's (ds + ps) × ds matrix and the ds × ps parity columns.
    fn weight(&self) -> usize {
        (self.ds + self.ps) * self.ds + self.ds * self.ps
    }

    fn build(ds: usize, ps: usize) -> Result<Tables, FecError> {
        let invalid = FecError::InvalidShards {
            data_shards: ds,
            parity_shards: ps,
        };
        let rs = ReedSolomon::new(ds, ps).map_err(|_| invalid.clone())?;
        let mut shards: Vec<Vec<u8>> = (0..ds + ps)
            .map(|k| {
                let mut v = vec![0u8; ds];
                if k < ds {
                    v[k] = 1;
                }
                v
            })
            .collect();
        rs.encode(&mut shards).map_err(|_| invalid)?;
        let parity = shards[ds..].concat();
        let columns = (0..ds)
            .flat_map(|i| (0..ps).map(move |j| (i, j)))
            .map(|(i, j)| parity[j * ds + i])
            .collect();
        Ok(Tables {
            ds,
            ps,
            rs,
            columns,
        })
    }
}

/// One (ds, ps) code (shared [`Tables`]) plus this user's small cache of decode rows.
pub(crate) struct Code {
    ds: usize,
    ps: usize,
    tables: Arc<Tables>,
    /// Most recently used last.
    cache: Vec<DecodeRows>,
}

impl Code {
    pub(crate) fn new(ds: usize, ps: usize) -> Result<Code, FecError> {
        if ds == 0 || ps == 0 || ds + ps > MAX_TOTAL_SHARDS {
            return Err(FecError::InvalidShards {
                data_shards: ds,
                parity_shards: ps,
            });
        }
        Ok(Code {
            ds,
            ps,
            tables: tables(ds, ps)?,
            cache: Vec::new(),
        })
    }

    pub(crate) fn data_shards(&self) -> usize {
        self.ds
    }

    pub(crate) fn parity_shards(&self) -> usize {
        self.ps
    }

    /// Row `j` of the parity matrix: the coefficients of the ds data shards.
    #[cfg(test)]
    pub(crate) fn parity_row(&self, j: usize) -> Vec<u8> {
        (0..self.ds)
            .map(|i| self.tables.columns[i * self.ps + j])
            .collect()
    }

    /// Column `i` of the parity matrix: data shard `i`'s coefficient in each parity shard.
    pub(crate) fn parity_column(&self, i: usize) -> &[u8] {
        &self.tables.columns[i * self.ps..(i + 1) * self.ps]
    }

    /// Rows rebuilding every data shard not in `chosen` from the shards in `chosen`, which must
    /// be the first `ds` present shards of the group in index order (`chosen_list`, ascending).
    /// Row `m` (for the m-th missing data shard, ascending) holds the coefficient of
    /// `chosen_list[k]` at `k`. `None` only if the crate rejects the set, which a valid set
    /// never triggers.
    pub(crate) fn decode_rows(
        &mut self,
        chosen: &ShardSet,
        chosen_list: &[usize],
    ) -> Option<&[u8]> {
        if let Some(pos) = self.cache.iter().position(|e| e.key == *chosen) {
            let hit = self.cache.remove(pos);
            self.cache.push(hit);
            return self.cache.last().map(|e| e.rows.as_slice());
        }
        let ds = self.ds;
        if chosen_list.len() != ds {
            return None;
        }
        let mut shards: Vec<Option<Vec<u8>>> = vec![None; ds + self.ps];
        for (k, &idx) in chosen_list.iter().enumerate() {
            let mut unit = vec![0u8; ds];
            unit[k] = 1;
            *shards.get_mut(idx)? = Some(unit);
        }
        self.tables.rs.reconstruct_data(&mut shards).ok()?;
        let mut rows = Vec::new();
        for (i, s) in shards.iter().take(ds).enumerate() {
            if chosen[i / 64] & (1 << (i % 64)) == 0 {
                rows.extend_from_slice(s.as_deref()?);
            }
        }
        let mut total: usize = self.cache.iter().map(|e| e.rows.len()).sum();
        while !self.cache.is_empty()
            && (total + rows.len() > CACHE_MAX_COEFS || self.cache.len() >= CACHE_MAX_ENTRIES)
        {
            total -= self.cache.remove(0).rows.len();
        }
        self.cache.push(DecodeRows { key: *chosen, rows });
        self.cache.last().map(|e| e.rows.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parity_rows_10_3_match_protocol_c5() {
        let code = Code::new(10, 3).unwrap();
        assert_eq!(
            code.parity_row(0),
            [129, 150, 175, 184, 210, 196, 254, 232, 3, 2]
        );
        assert_eq!(
            code.parity_row(1),
            [150, 129, 184, 175, 196, 210, 232, 254, 2, 3]
        );
        assert_eq!(
            code.parity_row(2),
            [191, 214, 98, 10, 6, 111, 223, 183, 5, 4]
        );
    }

    #[test]
    fn parity_rows_3_2_match_protocol_c5() {
        let code = Code::new(3, 2).unwrap();
        assert_eq!(code.parity_row(0), [1, 1, 1]);
        assert_eq!(code.parity_row(1), [15, 8, 6]);
    }

    #[test]
    fn invalid_counts_are_rejected() {
        assert!(Code::new(0, 3).is_err());
        assert!(Code::new(3, 0).is_err());
        assert!(Code::new(200, 57).is_err());
        assert!(Code::new(200, 56).is_ok());
    }

    #[test]
    fn codes_of_one_setting_share_their_tables() {
        // Another setting in between: the table is most-recently-used, not last-built.
        let a = Code::new(7, 5).unwrap();
        let other = Code::new(5, 7).unwrap();
        let b = Code::new(7, 5).unwrap();
        assert!(Arc::ptr_eq(&a.tables, &b.tables));
        assert!(!Arc::ptr_eq(&a.tables, &other.tables));
        // Decode-row caches stay per code.
        let mut a = a;
        let mut set = [0u64; 4];
        let chosen: Vec<usize> = (1..8).collect();
        for &i in &chosen {
            set_insert(&mut set, i);
        }
        assert!(a.decode_rows(&set, &chosen).is_some());
        assert_eq!((a.cache.len(), b.cache.len()), (1, 0));
    }

    #[test]
    fn shared_tables_stay_bounded_and_evicted_ones_live_on() {
        let bounded = || {
            let shared = SHARED_TABLES.lock().unwrap();
            shared.len() <= SHARED_TABLES_MAX
                && shared.iter().map(|t| t.weight()).sum::<usize>() <= SHARED_TABLES_MAX_WEIGHT
        };
        let first = Code::new(1, 200).unwrap();
        // Other tests build codes concurrently, so only bounds are checked, not exact contents.
        // More settings than the count bound: (1..=2, 1..=128).
        let many: Vec<Code> = (1..=2)
            .flat_map(|ds| (1..=SHARED_TABLES_MAX).map(move |ps| Code::new(ds, ps).unwrap()))
            .collect();
        assert!(bounded());
        // Heavier settings than the weight bound: two 200-shard ones.
        let heavy = [Code::new(150, 50).unwrap(), Code::new(50, 150).unwrap()];
        assert!(bounded());
        assert_eq!(first.parity_column(0).len(), 200);
        assert_eq!(many.len(), 2 * SHARED_TABLES_MAX);
        assert_eq!(heavy[1].parity_column(0).len(), 150);
        // A setting evicted and rebuilt yields the same coefficients.
        let again = Code::new(1, 200).unwrap();
        assert_eq!(again.parity_column(0), first.parity_column(0));
    }

    #[test]
    fn decode_rows_invert_the_parity_rows() {
        // (3,2), data shards 1 and 2 lost, rebuilt from data0, parity0, parity1.
        let mut code = Code::new(3, 2).unwrap();
        let mut set = [0u64; 4];
        for i in [0, 3, 4] {
            set_insert(&mut set, i);
        }
        let rows = code.decode_rows(&set, &[0, 3, 4]).unwrap().to_vec();
        assert_eq!(rows.len(), 6);
        // Apply to a concrete group and compare with the true data.
        let data = [0x11u8, 0x5A, 0xC3];
        let p: Vec<u8> = (0..2)
            .map(|j| {
                code.parity_row(j).iter().zip(data).fold(0, |acc, (&c, d)| {
                    acc ^ reed_solomon_erasure::galois_8::mul(c, d)
                })
            })
            .collect();
        let present = [data[0], p[0], p[1]];
        for (m, want) in [(0, data[1]), (1, data[2])] {
            let got = rows[m * 3..m * 3 + 3]
                .iter()
                .zip(present)
                .fold(0, |acc, (&c, x)| {
                    acc ^ reed_solomon_erasure::galois_8::mul(c, x)
                });
            assert_eq!(got, want);
        }
        // Second lookup is served by the cache and identical.
        assert_eq!(code.decode_rows(&set, &[0, 3, 4]).unwrap(), rows.as_slice());
    }
}
