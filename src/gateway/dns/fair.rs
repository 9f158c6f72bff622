//! Fair shares of DNS forwarding: no client can take what its neighbours
//! need.
//!
//! # Theory of operation
//!
//! A forwarded query holds two things until it is answered: a pending entry
//! in its network's [`DnsServer`](super::DnsServer) (the switch thread) and
//! a place in the daemon's one [`Forwarder`](super::Forwarder). A query
//! whose upstream never answers holds both for the forwarder's whole
//! timeout, so a sandbox asking for such names as fast as it can would, if
//! served first come first served, hold every place there is and starve
//! everyone else (issue 16, item 4). Both are therefore shared out per
//! *client*: the query's source address on its network ([`ClientKey`]),
//! which the switch's anti-spoofing guarantees is the asking port's own.
//! This module is the bookkeeping of both, with no I/O and no clock of its
//! own (time is passed in), so it is unit-tested alone:
//!
//! - [`Shares`] bounds what each key holds and what all hold together. A
//!   key at its own bound is refused; when the whole is full, the biggest
//!   holder gives one up to a key that holds at least two fewer, and only
//!   otherwise is the newcomer refused. So a full pool never shuts out a
//!   client that holds little, and two clients that hold the same never
//!   take turns evicting each other. The switch's pending queries are
//!   such shares, by source address ([`MAX_PENDING_PER_CLIENT`] of the
//!   network's [`MAX_PENDING`](super::MAX_PENDING)).
//! - [`FairQueue`] is the forwarder's: one FIFO queue per client, bounded
//!   per client and in all (a full whole evicts the oldest query of the
//!   longest queue, as [`Shares`] does), and three bounds on what is sent
//!   upstream at once: per client, per network and per daemon
//!   ([`Limits`]). The next query sent is the oldest of the client with the
//!   fewest queries in flight among those under their bounds, ties broken
//!   round robin: a client that asks rarely goes ahead of one that holds
//!   its whole share, and a client at its bound waits without delaying
//!   anyone. A query that waits longer than [`Limits::max_wait`] for its
//!   turn is given up ([`FairQueue::expire`]), so the wait is bounded too;
//!   the upstream timeout runs only once a query is sent.
//!
//! Every map here is keyed by clients that hold something, and an entry is
//! removed the moment it holds nothing: there are never more entries than
//! queries held, whatever addresses appear.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most forwarded queries one client (source address) may have pending
/// on its network: a quarter of the network's [`MAX_PENDING`](super::MAX_PENDING).
pub const MAX_PENDING_PER_CLIENT: usize = 64;

/// Who asked: the network a query arrived on and its source address there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    /// The network's name.
    pub network: Arc<str>,
    /// The asker's address on it (verified by the switch).
    pub addr: Ipv4Addr,
}

impl ClientKey {
    /// The client `addr` on `network`.
    pub fn new(network: Arc<str>, addr: Ipv4Addr) -> ClientKey {
        ClientKey { network, addr }
    }
}

/// What [`Shares::admit`] decided for one more share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit<K> {
    /// There is room.
    Yes,
    /// The whole is full: the holder `K` must give one up first.
    EvictFrom(K),
    /// Refused: the key is at its bound, or the whole is full and nobody
    /// holds two more than it.
    No,
}

/// Counts of what each key holds, bounded per key and in all. See the
/// module documentation.
#[derive(Debug)]
pub struct Shares<K> {
    held: HashMap<K, usize>,
    total: usize,
    per_key: usize,
    all: usize,
}

impl<K: Clone + Eq + Hash> Shares<K> {
    /// At most `per_key` for each key and `all` together.
    pub fn new(per_key: usize, all: usize) -> Shares<K> {
        Shares {
            held: HashMap::new(),
            total: 0,
            per_key,
            all,
        }
    }

    /// Whether `key` may hold one more, and at whose cost.
    pub fn admit(&self, key: &K) -> Admit<K> {
        let mine = self.held(key);
        if mine >= self.per_key {
            return Admit::No;
        }
        if self.total < self.all {
            return Admit::Yes;
        }
        match self.biggest() {
            Some((hog, n)) if n > mine + 1 => Admit::EvictFrom(hog.clone()),
            _ => Admit::No,
        }
    }

    /// `key` holds one more (after [`Shares::admit`] said so).
    pub fn add(&mut self, key: K) {
        *self.held.entry(key).or_insert(0) += 1;
        self.total += 1;
    }

    /// `key` holds one less; its entry goes when it holds nothing.
    pub fn remove(&mut self, key: &K) {
        if let Some(n) = self.held.get_mut(key) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.held.remove(key);
            }
        }
    }

    /// What `key` holds.
    pub fn held(&self, key: &K) -> usize {
        self.held.get(key).copied().unwrap_or(0)
    }

    /// What all hold together.
    pub fn total(&self) -> usize {
        self.total
    }

    /// How many keys hold anything.
    pub fn holders(&self) -> usize {
        self.held.len()
    }

    fn biggest(&self) -> Option<(&K, usize)> {
        self.held
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(k, n)| (k, *n))
    }
}

/// The bounds of a [`FairQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Queries sent upstream at once, in all.
    pub in_flight: usize,
    /// ... per network.
    pub in_flight_per_network: usize,
    /// ... per client.
    pub in_flight_per_client: usize,
    /// Queries waiting for their turn, in all.
    pub queued: usize,
    /// ... per client.
    pub queued_per_client: usize,
    /// Longest a query waits for its turn before it is given up.
    pub max_wait: Duration,
}

/// The forwarder's queues. See the module documentation.
#[derive(Debug)]
pub struct FairQueue<J> {
    limits: Limits,
    clients: HashMap<ClientKey, Client<J>>,
    /// Queries in flight per network.
    networks: HashMap<Arc<str>, usize>,
    /// The clients with queued queries, in round-robin order.
    ring: VecDeque<ClientKey>,
    queued: usize,
    in_flight: usize,
}

/// One client's queue and what it has in flight.
#[derive(Debug)]
struct Client<J> {
    /// (when it was submitted, the query), oldest first.
    queue: VecDeque<(Instant, J)>,
    in_flight: usize,
}

/// What [`FairQueue::push`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed<J> {
    /// Queued.
    Queued,
    /// Queued, and this query of the longest queue was given up for it.
    Evicted(J),
    /// Not queued (the client's queue is full, or the whole is and no
    /// queue is longer than the client's).
    Refused(J),
}

impl<J> FairQueue<J> {
    /// Empty queues with these bounds.
    pub fn new(limits: Limits) -> FairQueue<J> {
        FairQueue {
            limits,
            clients: HashMap::new(),
            networks: HashMap::new(),
            ring: VecDeque::new(),
            queued: 0,
            in_flight: 0,
        }
    }

    /// Queue `job` for `client`, submitted at `at` (its wait counts from then).
    pub fn push(&mut self, at: Instant, client: ClientKey, job: J) -> Pushed<J> {
        let mine = self.clients.get(&client).map_or(0, |c| c.queue.len());
        if mine >= self.limits.queued_per_client {
            return Pushed::Refused(job);
        }
        let mut evicted = None;
        if self.queued >= self.limits.queued {
            let longest = self
                .ring
                .iter()
                .filter_map(|k| self.clients.get(k).map(|c| (k, c.queue.len())))
                .max_by_key(|(_, n)| *n)
                .map(|(k, n)| (k.clone(), n));
            match longest {
                Some((hog, n)) if n > mine + 1 => {
                    evicted = self.pop_front_of(&hog).map(|(_, j)| j);
                }
                _ => return Pushed::Refused(job),
            }
        }
        let entry = self.clients.entry(client.clone()).or_insert(Client {
            queue: VecDeque::new(),
            in_flight: 0,
        });
        if entry.queue.is_empty() {
            self.ring.push_back(client);
        }
        entry.queue.push_back((at, job));
        self.queued += 1;
        match evicted {
            Some(j) => Pushed::Evicted(j),
            None => Pushed::Queued,
        }
    }

    /// The next query to send upstream, if any may be sent now; it counts
    /// as in flight until [`FairQueue::finish`]. Call [`FairQueue::expire`]
    /// first, so no query is sent after it was given up.
    pub fn pop(&mut self) -> Option<(ClientKey, J)> {
        if self.in_flight >= self.limits.in_flight {
            return None;
        }
        let mut best: Option<(usize, usize)> = None;
        for (i, key) in self.ring.iter().enumerate() {
            let Some(client) = self.clients.get(key) else {
                continue;
            };
            let network = self.networks.get(&key.network).copied().unwrap_or(0);
            if client.in_flight >= self.limits.in_flight_per_client
                || network >= self.limits.in_flight_per_network
            {
                continue;
            }
            if best.map_or(true, |(_, fewest)| client.in_flight < fewest) {
                best = Some((i, client.in_flight));
                if client.in_flight == 0 {
                    break;
                }
            }
        }
        let (i, _) = best?;
        let key = self.ring.remove(i)?;
        let client = self.clients.get_mut(&key)?;
        let (_, job) = client.queue.pop_front()?;
        client.in_flight += 1;
        if !client.queue.is_empty() {
            self.ring.push_back(key.clone());
        }
        self.queued -= 1;
        self.in_flight += 1;
        *self.networks.entry(Arc::clone(&key.network)).or_insert(0) += 1;
        Some((key, job))
    }

    /// A query of `client` that [`FairQueue::pop`] gave is done.
    pub fn finish(&mut self, client: &ClientKey) {
        let Some(c) = self.clients.get_mut(client) else {
            return;
        };
        if c.in_flight == 0 {
            return;
        }
        c.in_flight -= 1;
        let idle = c.in_flight == 0 && c.queue.is_empty();
        self.in_flight -= 1;
        if let Some(n) = self.networks.get_mut(&client.network) {
            *n -= 1;
            if *n == 0 {
                self.networks.remove(&client.network);
            }
        }
        if idle {
            self.clients.remove(client);
        }
    }

    /// Give up the queries that have waited [`Limits::max_wait`] by `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<J> {
        let mut late = Vec::new();
        let max_wait = self.limits.max_wait;
        let due = |at: &Instant| now.saturating_duration_since(*at) >= max_wait;
        let keys: Vec<ClientKey> = self
            .ring
            .iter()
            .filter(|k| {
                self.clients
                    .get(*k)
                    .and_then(|c| c.queue.front())
                    .is_some_and(|(at, _)| due(at))
            })
            .cloned()
            .collect();
        for key in keys {
            while let Some(c) = self.clients.get(&key) {
                if !c.queue.front().is_some_and(|(at, _)| due(at)) {
                    break;
                }
                match self.pop_front_of(&key) {
                    Some((_, job)) => late.push(job),
                    None => break,
                }
            }
        }
        late
    }

    /// When the oldest queued query will have waited too long.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.ring
            .iter()
            .filter_map(|k| self.clients.get(k)?.queue.front())
            .map(|(at, _)| *at + self.limits.max_wait)
            .min()
    }

    /// Queries waiting for their turn.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Queries sent and not finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Clients holding anything (queued or in flight).
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Take the oldest queued query of `key`, keeping the ring and the
    /// client map exact.
    fn pop_front_of(&mut self, key: &ClientKey) -> Option<(Instant, J)> {
        let client = self.clients.get_mut(key)?;
        let front = client.queue.pop_front()?;
        self.queued -= 1;
        if client.queue.is_empty() {
            self.ring.retain(|k| k != key);
            if client.in_flight == 0 {
                self.clients.remove(key);
            }
        }
        Some(front)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(network: &str, last: u8) -> ClientKey {
        ClientKey::new(Arc::from(network), Ipv4Addr::new(10, 0, 0, last))
    }

    fn limits() -> Limits {
        Limits {
            in_flight: 8,
            in_flight_per_network: 4,
            in_flight_per_client: 2,
            queued: 10,
            queued_per_client: 5,
            max_wait: Duration::from_secs(1),
        }
    }

    #[test]
    fn shares_bound_each_key_and_the_whole() {
        let mut s = Shares::new(3, 5);
        for _ in 0..3 {
            assert_eq!(s.admit(&1), Admit::Yes);
            s.add(1);
        }
        assert_eq!(s.admit(&1), Admit::No, "key 1 is at its bound");
        s.add(2);
        s.add(2);
        assert_eq!(s.total(), 5);
        // Full: key 3 (holding 0) takes one from the biggest, key 1.
        assert_eq!(s.admit(&3), Admit::EvictFrom(1));
        s.remove(&1);
        s.add(3);
        // Now 1, 2 hold two each and 3 one: nobody holds two more than 3.
        assert_eq!(s.admit(&3), Admit::No);
        assert_eq!(s.admit(&2), Admit::No);
        // A newcomer still gets in at the cost of a holder of two.
        assert!(matches!(s.admit(&4), Admit::EvictFrom(1 | 2)));
    }

    #[test]
    fn shares_forget_keys_that_hold_nothing() {
        let mut s = Shares::new(100, 1000);
        for k in 0..50 {
            s.add(k);
        }
        assert_eq!(s.holders(), 50);
        for k in 0..50 {
            s.remove(&k);
        }
        assert_eq!((s.holders(), s.total()), (0, 0));
        s.remove(&7); // nothing held: harmless
        assert_eq!(s.total(), 0);
    }

    #[test]
    fn one_client_holds_only_its_share_in_flight() {
        let t = Instant::now();
        let mut q = FairQueue::new(limits());
        let hog = key("a", 1);
        for i in 0..5 {
            assert_eq!(q.push(t, hog.clone(), i), Pushed::Queued);
        }
        assert_eq!(q.push(t, hog.clone(), 5), Pushed::Refused(5));
        assert_eq!(q.pop(), Some((hog.clone(), 0)));
        assert_eq!(q.pop(), Some((hog.clone(), 1)));
        assert_eq!(q.pop(), None, "the hog is at its in-flight bound");
        // A neighbour on the same network is sent at once.
        let near = key("a", 2);
        q.push(t, near.clone(), 100);
        assert_eq!(q.pop(), Some((near.clone(), 100)));
        // When the hog's query finishes, its next one goes.
        q.finish(&hog);
        assert_eq!(q.pop(), Some((hog.clone(), 2)));
        assert_eq!(q.in_flight(), 3);
    }

    #[test]
    fn the_fewest_in_flight_go_first_then_round_robin() {
        let t = Instant::now();
        let mut q = FairQueue::new(Limits {
            in_flight_per_client: 8,
            in_flight_per_network: 8,
            in_flight: 8,
            ..limits()
        });
        let (a, b) = (key("a", 1), key("b", 1));
        for i in 0..5 {
            q.push(t, a.clone(), i);
        }
        assert_eq!(q.pop(), Some((a.clone(), 0)));
        assert_eq!(q.pop(), Some((a.clone(), 1)));
        // b arrives behind a's queue but has nothing in flight: it goes first.
        q.push(t, b.clone(), 10);
        q.push(t, b.clone(), 11);
        q.push(t, b.clone(), 12);
        assert_eq!(q.pop(), Some((b.clone(), 10)));
        assert_eq!(q.pop(), Some((b.clone(), 11)));
        // Equal (two each): round robin, a then b.
        assert_eq!(q.pop(), Some((a.clone(), 2)));
        assert_eq!(q.pop(), Some((b.clone(), 12)));
        assert_eq!(q.pop(), Some((a.clone(), 3)));
    }

    #[test]
    fn a_network_holds_only_its_share_and_the_daemon_its_bound() {
        let t = Instant::now();
        let mut q = FairQueue::new(limits());
        // Three clients of network a: 2 + 2 would pass their own bound, but
        // the network's is 4.
        for c in 1..=3 {
            for i in 0..2 {
                q.push(t, key("a", c), u32::from(c) * 10 + i);
            }
        }
        let mut sent = Vec::new();
        while let Some((k, _)) = q.pop() {
            sent.push(k);
        }
        assert_eq!(sent.len(), 4, "{sent:?}");
        // Other networks still get theirs, up to the daemon's 8.
        for n in ["b", "c"] {
            for c in 1..=2 {
                q.push(t, key(n, c), 0);
                q.push(t, key(n, c), 0);
            }
        }
        let mut more = 0;
        while q.pop().is_some() {
            more += 1;
        }
        assert_eq!((more, q.in_flight()), (4, 8));
    }

    #[test]
    fn a_full_queue_evicts_from_the_longest() {
        let t = Instant::now();
        let mut q = FairQueue::new(limits());
        let (a, b, c) = (key("a", 1), key("a", 2), key("b", 1));
        for i in 0..5 {
            q.push(t, a.clone(), i);
        }
        for i in 10..15 {
            q.push(t, b.clone(), i);
        }
        assert_eq!(q.queued(), 10);
        // c holds nothing: the oldest of a longest queue makes room.
        assert!(matches!(q.push(t, c.clone(), 20), Pushed::Evicted(0 | 10)));
        assert_eq!(q.queued(), 10);
        // Never more entries than queries held.
        assert_eq!(q.clients(), 3);
    }

    #[test]
    fn waiting_is_bounded_and_the_clock_starts_at_submission() {
        let t = Instant::now();
        let mut q = FairQueue::new(limits());
        let hog = key("a", 1);
        for i in 0..4 {
            q.push(t + Duration::from_millis(100 * i), hog.clone(), i);
        }
        assert_eq!(q.pop().map(|(_, j)| j), Some(0));
        assert_eq!(q.pop().map(|(_, j)| j), Some(1));
        assert_eq!(q.next_expiry(), Some(t + Duration::from_millis(1200)));
        assert!(q.expire(t + Duration::from_millis(1199)).is_empty());
        assert_eq!(q.expire(t + Duration::from_millis(1300)), vec![2, 3]);
        assert_eq!((q.queued(), q.next_expiry()), (0, None));
        // The two in flight are not given up here (the upstream timeout
        // bounds them); when they finish the client is forgotten.
        q.finish(&hog);
        q.finish(&hog);
        q.finish(&hog); // once too often: harmless
        assert_eq!((q.in_flight(), q.clients()), (0, 0));
    }

    #[test]
    fn many_clients_leave_no_entries_behind() {
        let t = Instant::now();
        let mut q = FairQueue::new(Limits {
            queued: 64,
            ..limits()
        });
        for round in 0..10u8 {
            for c in 0..50u8 {
                let _ = q.push(t, key("a", c.wrapping_add(round.wrapping_mul(50))), ());
            }
            while let Some((k, ())) = q.pop() {
                q.finish(&k);
            }
            let late = q.expire(t + Duration::from_secs(5));
            assert!(late.len() <= 64);
            assert_eq!((q.clients(), q.queued(), q.in_flight()), (0, 0, 0));
        }
    }
}
