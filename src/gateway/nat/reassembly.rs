//! Reassembly of the IPv4 fragments sandboxes send through the NAT, ahead
//! of its smoltcp interface, which then only ever sees whole packets. Pure
//! bookkeeping: no I/O, and time is passed in (STYLE items 1 and 2).
//!
//! # Why not smoltcp's reassembler
//!
//! smoltcp's (`proto-ipv4-fragmentation`) is one fixed set of slots per
//! interface (a compile-time feature: 4 here), each held 60 s from its
//! first fragment, first come, first served, whoever sent it. One sandbox
//! sending four first fragments a minute, each with an identification of
//! its own, held every slot of its network's NAT, and no neighbour's
//! fragmented datagram was reassembled (issue 16: 0 of 5 answered). Its
//! slots cannot be told apart by source, its timeout is per interface,
//! and overlapping fragments overwrite each other. Fragments also went to
//! smoltcp straight from the wire, past the engine's own checks (the TCP
//! flow table and its guard against a RST in SYN-RECEIVED, checksum
//! verification). So the engine reassembles here and hands the whole
//! packet to the same path as any unfragmented one.
//!
//! # Bounds
//!
//! A datagram is known by its source, destination, protocol and
//! identification (RFC 791). Sources are sandboxes' own addresses (the
//! switch's anti-spoofing vouches for them), so a bound per source is a
//! bound per sandbox:
//!
//! - each source has at most [`Limits::per_source_datagrams`] datagrams
//!   under reassembly and [`Limits::per_source_bytes`] of buffers; a new
//!   datagram beyond that evicts the same source's oldest, so a flood only
//!   ever evicts its own;
//! - all sources of the network together hold at most
//!   [`Limits::total_bytes`]; beyond that the oldest datagram of the source
//!   holding the most is evicted, so a source with little under
//!   reassembly keeps it;
//! - a datagram is given up [`Limits::timeout`] after its first fragment
//!   came (Linux's `ipfrag_time` is 30 s; a sandbox's kernel sends all the
//!   fragments of a datagram in one go over a virtual wire, so a few
//!   seconds are ample);
//! - what a datagram costs is its payload buffer (grown to the highest end
//!   seen, at most [`MAX_PAYLOAD`]) plus [`DATAGRAM_OVERHEAD`]: a fragment
//!   that claims a far offset pays for the gap out of its own source's
//!   budget.
//!
//! # Dropped as bad
//!
//! The whole datagram goes, and [`Push::Bad`] says so, for a fragment that
//! overlaps another (an exact duplicate excepted: RFC 5722's rule for
//! IPv6, Linux's for IPv4 since 4.19), ends past [`MAX_PAYLOAD`], is not
//! the last but carries no data or data not a multiple of 8 bytes, or
//! disagrees about where the datagram ends; and for a datagram in more
//! than [`MAX_RUNS`] separate pieces (a virtual wire delivers in order).
//!
//! A complete datagram leaves with a fresh 20-byte header: the first
//! fragment's fields, no options, no fragment bits, its checksum redone.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use smoltcp::wire::Ipv4Packet;

/// The most payload an IPv4 datagram can have (with a 20-byte header).
pub const MAX_PAYLOAD: usize = 65535 - 20;

/// What a datagram under reassembly costs besides its payload buffer
/// (its entry, key and list of pieces, roughly).
pub const DATAGRAM_OVERHEAD: usize = 256;

/// Most separate pieces (runs of contiguous fragments) of one datagram.
pub const MAX_RUNS: usize = 16;

/// The bounds of one network's reassembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Datagrams under reassembly per source address.
    pub per_source_datagrams: usize,
    /// Bytes of buffers per source address (at least one whole datagram).
    pub per_source_bytes: usize,
    /// Bytes of buffers of all sources (at least `per_source_bytes`).
    pub total_bytes: usize,
    /// How long a datagram may take to complete, from its first fragment.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            per_source_datagrams: 8,
            per_source_bytes: 256 * 1024,
            total_bytes: 4 * 1024 * 1024,
            timeout: Duration::from_secs(3),
        }
    }
}

/// What became of a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Kept; its datagram is not complete yet.
    Pending,
    /// It completed its datagram, which is now in the caller's buffer.
    Complete,
    /// Refused (see the module documentation), and its datagram dropped.
    Bad,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Reassembler {
    limits: Limits,
    datagrams: HashMap<Key, Datagram>,
    sources: HashMap<Ipv4Addr, Source>,
    /// Bytes charged to all sources.
    bytes: usize,
    /// Datagrams given up (evicted or timed out) since the last
    /// [`Reassembler::take_given_up`].
    given_up: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ident: u16,
}

impl Key {
    fn of(ip: &Ipv4Packet<&[u8]>) -> Key {
        Key {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            protocol: ip.next_header().into(),
            ident: ip.ident(),
        }
    }
}

#[derive(Debug)]
struct Datagram {
    started: Instant,
    /// The first fragment's header (its first 20 bytes), once it came.
    header: Option<[u8; 20]>,
    /// The payload so far, up to the highest end seen.
    data: Vec<u8>,
    /// The byte ranges received, sorted, disjoint and not touching.
    runs: Vec<(usize, usize)>,
    /// Where the payload ends, once the last fragment came.
    total: Option<usize>,
}

impl Datagram {
    fn cost(&self) -> usize {
        self.data.capacity() + DATAGRAM_OVERHEAD
    }
}

#[derive(Debug, Default)]
struct Source {
    bytes: usize,
    /// Its datagrams, oldest first.
    order: VecDeque<Key>,
}

impl Reassembler {
    /// An empty reassembler with these bounds (raised to hold at least one
    /// datagram per source and one source's worth in all).
    pub fn new(limits: Limits) -> Reassembler {
        let per_source_bytes = limits.per_source_bytes.max(MAX_PAYLOAD + DATAGRAM_OVERHEAD);
        Reassembler {
            limits: Limits {
                per_source_datagrams: limits.per_source_datagrams.max(1),
                per_source_bytes,
                total_bytes: limits.total_bytes.max(per_source_bytes),
                timeout: limits.timeout,
            },
            datagrams: HashMap::new(),
            sources: HashMap::new(),
            bytes: 0,
            given_up: 0,
        }
    }

    /// Take one fragment (`ip` is exactly the packet, its header checked;
    /// `more_frags` or a nonzero offset set). On [`Push::Complete`] the
    /// whole packet is in `out` (replacing what was there).
    pub fn push(&mut self, now: Instant, ip: &Ipv4Packet<&[u8]>, out: &mut Vec<u8>) -> Push {
        let key = Key::of(ip);
        let offset = usize::from(ip.frag_offset());
        let more = ip.more_frags();
        let data = ip.payload();
        let end = offset + data.len();
        if end > MAX_PAYLOAD || (more && (data.is_empty() || data.len() % 8 != 0)) {
            self.remove(key);
            return Push::Bad;
        }
        if !self.datagrams.contains_key(&key) && !self.open(now, key) {
            return Push::Bad;
        }
        let Some(d) = self.datagrams.get(&key) else {
            return Push::Bad;
        };
        // Where the datagram ends: one answer, and nothing past it.
        let known_end = d.runs.last().map_or(0, |r| r.1);
        let consistent = match (more, d.total) {
            (false, Some(total)) => total == end,
            (false, None) => known_end <= end,
            (true, Some(total)) => end <= total,
            (true, None) => true,
        };
        if !consistent {
            self.remove(key);
            return Push::Bad;
        }
        // Overlap: only an exact repeat of bytes already here is harmless.
        if let Some(run) = d.runs.iter().find(|r| offset < r.1 && r.0 < end) {
            let repeat = run.0 <= offset && end <= run.1 && d.data[offset..end] == *data;
            if repeat {
                return Push::Pending;
            }
            self.remove(key);
            return Push::Bad;
        }
        let fits_runs =
            d.runs.len() < MAX_RUNS || d.runs.iter().any(|r| r.1 == offset || r.0 == end);
        if !fits_runs {
            self.remove(key);
            return Push::Bad;
        }
        if end > d.data.len() && !self.grow(key, end) {
            self.remove(key);
            return Push::Bad;
        }
        let Some(d) = self.datagrams.get_mut(&key) else {
            return Push::Bad;
        };
        d.data[offset..end].copy_from_slice(data);
        insert_run(&mut d.runs, (offset, end));
        if !more {
            d.total = Some(end);
        }
        if offset == 0 {
            let mut header = [0u8; 20];
            header.copy_from_slice(&ip.as_ref()[..20]);
            d.header = Some(header);
        }
        let complete = match (d.header, d.total) {
            (Some(_), Some(total)) => d.runs.as_slice() == [(0, total)],
            _ => false,
        };
        if !complete {
            return Push::Pending;
        }
        let Some(d) = self.remove(key) else {
            return Push::Bad;
        };
        let (Some(header), Some(total)) = (d.header, d.total) else {
            return Push::Bad;
        };
        out.clear();
        out.extend_from_slice(&header);
        out.extend_from_slice(&d.data[..total]);
        let mut whole = Ipv4Packet::new_unchecked(&mut out[..]);
        whole.set_header_len(20);
        // At most MAX_PAYLOAD + 20 = 65535.
        whole.set_total_len((20 + total) as u16);
        whole.set_dont_frag(false);
        whole.set_more_frags(false);
        whole.set_frag_offset(0);
        whole.fill_checksum();
        Push::Complete
    }

    /// Whether a datagram with `ip`'s key is under reassembly (its first
    /// fragment, say, was taken).
    pub fn holds(&self, ip: &Ipv4Packet<&[u8]>) -> bool {
        self.datagrams.contains_key(&Key::of(ip))
    }

    /// Give up every datagram older than the timeout.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.limits.timeout;
        let old: Vec<Key> = self
            .datagrams
            .iter()
            .filter(|(_, d)| now.saturating_duration_since(d.started) >= timeout)
            .map(|(&k, _)| k)
            .collect();
        for key in old {
            self.remove(key);
            self.given_up += 1;
        }
    }

    /// Drop every datagram of `src` (its sandbox went away).
    pub fn forget_source(&mut self, src: Ipv4Addr) {
        let keys: Vec<Key> = self
            .sources
            .get(&src)
            .map(|s| s.order.iter().copied().collect())
            .unwrap_or_default();
        for key in keys {
            self.remove(key);
        }
    }

    /// Datagrams given up (evicted to make room, or timed out) since the
    /// last call.
    pub fn take_given_up(&mut self) -> u64 {
        std::mem::take(&mut self.given_up)
    }

    /// Whether no datagram is under reassembly.
    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    /// Bytes of buffers held, all sources together.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Start a datagram for `key`, evicting the source's oldest if it has
    /// as many as it may. False if there is no room even so.
    fn open(&mut self, now: Instant, key: Key) -> bool {
        while self
            .sources
            .get(&key.src)
            .is_some_and(|s| s.order.len() >= self.limits.per_source_datagrams)
        {
            if !self.evict_oldest_of(key.src, key) {
                return false;
            }
        }
        if !self.make_room(key, DATAGRAM_OVERHEAD) {
            return false;
        }
        let d = Datagram {
            started: now,
            header: None,
            data: Vec::new(),
            runs: Vec::new(),
            total: None,
        };
        self.charge(key.src, d.cost());
        self.sources
            .entry(key.src)
            .or_default()
            .order
            .push_back(key);
        self.datagrams.insert(key, d);
        true
    }

    /// Grow `key`'s buffer to hold `end` bytes, within the budgets.
    fn grow(&mut self, key: Key, end: usize) -> bool {
        let Some(d) = self.datagrams.get(&key) else {
            return false;
        };
        // Doubling, but never past the largest datagram.
        let held = d.data.capacity();
        let capacity = if end <= held {
            held
        } else {
            end.max(held.saturating_mul(2).min(MAX_PAYLOAD))
        };
        let extra = capacity - held;
        if !self.make_room(key, extra) {
            return false;
        }
        let Some(d) = self.datagrams.get_mut(&key) else {
            return false;
        };
        let before = d.cost();
        d.data.reserve_exact(capacity - d.data.len());
        d.data.resize(end, 0);
        let after = d.cost();
        self.charge(key.src, after - before);
        true
    }

    /// Evict other datagrams until `extra` more bytes for `key` fit in its
    /// source's budget and in the total. False if they cannot.
    fn make_room(&mut self, key: Key, extra: usize) -> bool {
        while self.sources.get(&key.src).map_or(0, |s| s.bytes) + extra
            > self.limits.per_source_bytes
        {
            if !self.evict_oldest_of(key.src, key) {
                return false;
            }
        }
        while self.bytes + extra > self.limits.total_bytes {
            // The source holding the most (other than `key` itself) pays.
            let heaviest = self
                .sources
                .iter()
                .filter(|(_, s)| s.order.iter().any(|k| *k != key))
                .max_by_key(|(_, s)| s.bytes)
                .map(|(&src, _)| src);
            match heaviest {
                Some(src) if self.evict_oldest_of(src, key) => {}
                _ => return false,
            }
        }
        true
    }

    /// Evict `src`'s oldest datagram other than `keep`. False if it has
    /// none.
    fn evict_oldest_of(&mut self, src: Ipv4Addr, keep: Key) -> bool {
        let oldest = self
            .sources
            .get(&src)
            .and_then(|s| s.order.iter().copied().find(|k| *k != keep));
        match oldest {
            Some(key) => {
                self.remove(key);
                self.given_up += 1;
                true
            }
            None => false,
        }
    }

    fn charge(&mut self, src: Ipv4Addr, bytes: usize) {
        self.bytes += bytes;
        self.sources.entry(src).or_default().bytes += bytes;
    }

    /// Forget `key`'s datagram and give its bytes back.
    fn remove(&mut self, key: Key) -> Option<Datagram> {
        let d = self.datagrams.remove(&key)?;
        let cost = d.cost();
        self.bytes = self.bytes.saturating_sub(cost);
        if let Some(s) = self.sources.get_mut(&key.src) {
            s.bytes = s.bytes.saturating_sub(cost);
            s.order.retain(|k| *k != key);
            if s.order.is_empty() {
                self.sources.remove(&key.src);
            }
        }
        Some(d)
    }
}

/// Add `run` (disjoint from every run in `runs`) and merge what touches.
fn insert_run(runs: &mut Vec<(usize, usize)>, run: (usize, usize)) {
    let at = runs.partition_point(|r| r.0 < run.0);
    runs.insert(at, run);
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(runs.len());
    for &r in runs.iter() {
        match merged.last_mut() {
            Some(last) if last.1 == r.0 => last.1 = r.1,
            _ => merged.push(r),
        }
    }
    *runs = merged;
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{IpProtocol, Ipv4Repr};

    const A: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 2);
    const B: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 3);
    const OUT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    /// A fragment of datagram `ident` from `src`: `data` at `offset`.
    fn fragment(src: Ipv4Addr, ident: u16, offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
        let repr = Ipv4Repr {
            src_addr: src,
            dst_addr: OUT,
            next_header: IpProtocol::Udp,
            payload_len: data.len(),
            hop_limit: 64,
        };
        let mut packet = vec![0u8; 20 + data.len()];
        let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
        repr.emit(&mut ip, &Default::default());
        ip.set_ident(ident);
        ip.set_more_frags(more);
        ip.set_frag_offset(offset as u16);
        ip.payload_mut().copy_from_slice(data);
        ip.fill_checksum();
        packet
    }

    fn push(r: &mut Reassembler, at: Instant, packet: &[u8], out: &mut Vec<u8>) -> Push {
        r.push(at, &Ipv4Packet::new_checked(packet).expect("ip"), out)
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn fragments_in_any_order_make_one_whole_packet() {
        let data = payload(3000);
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let mut r = Reassembler::new(Limits::default());
            let now = Instant::now();
            let pieces = [
                fragment(A, 9, 0, true, &data[..1480]),
                fragment(A, 9, 1480, true, &data[1480..2960]),
                fragment(A, 9, 2960, false, &data[2960..]),
            ];
            let mut out = Vec::new();
            let results: Vec<Push> = order
                .iter()
                .map(|&i| push(&mut r, now, &pieces[i], &mut out))
                .collect();
            assert_eq!(results, [Push::Pending, Push::Pending, Push::Complete]);
            let ip = Ipv4Packet::new_checked(&out[..]).expect("whole");
            assert!(ip.verify_checksum());
            assert_eq!((ip.header_len(), ip.total_len()), (20, 3020));
            assert!(!ip.more_frags() && ip.frag_offset() == 0);
            assert_eq!((ip.src_addr(), ip.dst_addr(), ip.ident()), (A, OUT, 9));
            assert_eq!(ip.payload(), &data[..]);
            assert!(r.is_empty());
            assert_eq!(r.bytes(), 0, "everything given back");
        }
    }

    #[test]
    fn a_flood_evicts_only_its_own_source() {
        let mut r = Reassembler::new(Limits::default());
        let now = Instant::now();
        let mut out = Vec::new();
        let data = payload(3000);
        // B's datagram is under way...
        let b_first = fragment(B, 1, 0, true, &data[..1480]);
        assert_eq!(push(&mut r, now, &b_first, &mut out), Push::Pending);
        // ...while A sends a thousand first fragments, each of its own.
        for ident in 0..1000u16 {
            let f = fragment(A, ident, 0, true, &data[..1480]);
            assert_eq!(push(&mut r, now, &f, &mut out), Push::Pending);
        }
        assert_eq!(r.take_given_up(), 1000 - 8, "A's oldest, each time");
        // B completes.
        let b_rest = fragment(B, 1, 1480, false, &data[1480..]);
        assert_eq!(push(&mut r, now, &b_rest, &mut out), Push::Complete);
        assert_eq!(&out[20..], &data[..]);
    }

    #[test]
    fn the_total_is_taken_back_from_the_heaviest_source() {
        let limits = Limits {
            per_source_datagrams: 64,
            per_source_bytes: 1 << 20,
            total_bytes: 1 << 20,
            timeout: Duration::from_secs(3),
        };
        let mut r = Reassembler::new(limits);
        let now = Instant::now();
        let mut out = Vec::new();
        let data = payload(8000);
        let b_first = fragment(B, 1, 0, true, &data[..4000]);
        assert_eq!(push(&mut r, now, &b_first, &mut out), Push::Pending);
        // A claims far offsets: each datagram costs it nearly 64 KiB.
        for ident in 0..40u16 {
            let f = fragment(A, ident, 64000, true, &data[..1000]);
            assert_eq!(push(&mut r, now, &f, &mut out), Push::Pending);
            assert!(r.bytes() <= 1 << 20, "within the total");
        }
        assert!(r.take_given_up() > 0, "A's own were evicted");
        let b_rest = fragment(B, 1, 4000, false, &data[4000..]);
        assert_eq!(push(&mut r, now, &b_rest, &mut out), Push::Complete);
    }

    #[test]
    fn a_datagram_costs_what_its_buffer_holds() {
        let mut r = Reassembler::new(Limits::default());
        let now = Instant::now();
        let mut out = Vec::new();
        let data = payload(65000);
        let mut at = 0;
        while at + 1480 < data.len() {
            let f = fragment(A, 2, at, true, &data[at..at + 1480]);
            assert_eq!(push(&mut r, now, &f, &mut out), Push::Pending);
            at += 1480;
            // Doubling, never past the largest datagram.
            assert!(r.bytes() <= MAX_PAYLOAD + DATAGRAM_OVERHEAD);
            assert!(r.bytes() < 2 * at + DATAGRAM_OVERHEAD + 1480);
        }
        let f = fragment(A, 2, at, false, &data[at..]);
        assert_eq!(push(&mut r, now, &f, &mut out), Push::Complete);
        assert_eq!(&out[20..], &data[..]);
        assert_eq!(r.bytes(), 0);
    }

    #[test]
    fn datagrams_time_out() {
        let mut r = Reassembler::new(Limits::default());
        let t0 = Instant::now();
        let mut out = Vec::new();
        let data = payload(2000);
        assert_eq!(
            push(
                &mut r,
                t0,
                &fragment(A, 5, 0, true, &data[..1480]),
                &mut out
            ),
            Push::Pending
        );
        r.expire(t0 + Duration::from_secs(2));
        assert!(!r.is_empty(), "still in time");
        r.expire(t0 + Duration::from_secs(3));
        assert!(r.is_empty());
        assert_eq!((r.take_given_up(), r.bytes()), (1, 0));
        // The rest, too late: a datagram of its own, never complete.
        let rest = fragment(A, 5, 1480, false, &data[1480..]);
        assert_eq!(
            push(&mut r, t0 + Duration::from_secs(4), &rest, &mut out),
            Push::Pending
        );
    }

    #[test]
    fn overlaps_lies_and_oversize_drop_the_datagram() {
        let data = payload(4000);
        let now = Instant::now();
        let mut out = Vec::new();
        let start = |r: &mut Reassembler, out: &mut Vec<u8>| {
            let f = fragment(A, 3, 0, true, &data[..1480]);
            assert_eq!(push(r, now, &f, out), Push::Pending);
        };
        let bad = [
            // Overlapping the first with other bytes.
            fragment(A, 3, 1472, true, &[0u8; 16]),
            // An exact repeat is fine (below); a changed one is not.
            fragment(A, 3, 0, true, &[9u8; 1480]),
            // Not a multiple of 8, yet more to come.
            fragment(A, 3, 1480, true, &data[1480..1483]),
            // Past 65535.
            fragment(A, 3, 65528, false, &[0u8; 16]),
            // The end lies: before data already here.
            fragment(A, 3, 8, false, &[]),
        ];
        for f in bad {
            let mut r = Reassembler::new(Limits::default());
            start(&mut r, &mut out);
            assert_eq!(push(&mut r, now, &f, &mut out), Push::Bad);
            assert!(r.is_empty(), "the datagram went with it");
            assert_eq!(r.bytes(), 0);
        }
        // Two different ends.
        let mut r = Reassembler::new(Limits::default());
        let f = fragment(A, 3, 2960, false, &data[2960..3000]);
        assert_eq!(push(&mut r, now, &f, &mut out), Push::Pending);
        let f = fragment(A, 3, 3000, false, &data[3000..3040]);
        assert_eq!(push(&mut r, now, &f, &mut out), Push::Bad);
        // An exact repeat is ignored.
        let mut r = Reassembler::new(Limits::default());
        start(&mut r, &mut out);
        start(&mut r, &mut out);
        let f = fragment(A, 3, 1480, false, &data[1480..]);
        assert_eq!(push(&mut r, now, &f, &mut out), Push::Complete);
        assert_eq!(&out[20..], &data[..]);
    }

    #[test]
    fn too_many_pieces_drop_the_datagram() {
        let mut r = Reassembler::new(Limits::default());
        let now = Instant::now();
        let mut out = Vec::new();
        for i in 0..MAX_RUNS {
            let f = fragment(A, 4, i * 16, true, &[1u8; 8]);
            assert_eq!(push(&mut r, now, &f, &mut out), Push::Pending, "{i}");
        }
        let f = fragment(A, 4, MAX_RUNS * 16, true, &[1u8; 8]);
        assert_eq!(push(&mut r, now, &f, &mut out), Push::Bad);
        assert!(r.is_empty());
    }

    #[test]
    fn forgetting_a_source_frees_its_datagrams_only() {
        let mut r = Reassembler::new(Limits::default());
        let now = Instant::now();
        let mut out = Vec::new();
        for src in [A, B] {
            let f = fragment(src, 1, 0, true, &[0u8; 8]);
            assert_eq!(push(&mut r, now, &f, &mut out), Push::Pending);
        }
        let probe = fragment(B, 1, 8, false, &[0u8; 8]);
        r.forget_source(A);
        assert!(r.holds(&Ipv4Packet::new_checked(&probe[..]).expect("ip")));
        r.forget_source(B);
        assert!(r.is_empty());
        assert_eq!(r.bytes(), 0);
    }

    #[test]
    fn random_fragments_never_panic_and_stay_within_bounds() {
        let limits = Limits::default();
        let mut r = Reassembler::new(limits);
        let mut out = Vec::new();
        let t0 = Instant::now();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 0..20_000u64 {
            let x = next();
            let src = Ipv4Addr::new(10, 88, 0, 2 + (x % 4) as u8);
            let ident = (x >> 8) as u16 % 32;
            let offset = ((x >> 24) as usize % 8192) * 8;
            let len = (x >> 40) as usize % 2000;
            let more = x & (1 << 60) != 0;
            let data = vec![(x >> 50) as u8; len.min(65535 - 20)];
            if offset + data.len() + 20 > 65535 + 8 * 8191 {
                continue;
            }
            let f = fragment(src, ident, offset.min(65528), more, &data);
            let _ = push(&mut r, t0 + Duration::from_millis(i), &f, &mut out);
            assert!(r.bytes() <= limits.total_bytes);
            for s in r.sources.values() {
                assert!(s.bytes <= limits.per_source_bytes);
                assert!(s.order.len() <= limits.per_source_datagrams);
            }
            if i % 1000 == 0 {
                r.expire(t0 + Duration::from_millis(i));
            }
        }
        r.expire(t0 + Duration::from_secs(3600));
        assert!(r.is_empty());
        assert_eq!(r.bytes(), 0);
    }
}
