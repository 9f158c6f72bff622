//! The byte budgets of the NAT's socket buffers: how much memory a sandbox
//! (and the daemon as a whole) can make the engine hold, whatever its
//! peers do. Pure decisions, unit-tested; the daemon-wide count is an
//! atomic in [`super::Nat`], each sandbox's a map in its network's engine.
//!
//! # Why buffers are budgeted by their size, not their use
//!
//! Every TCP flow has a smoltcp receive buffer (sandbox → host) and send
//! buffer (host → sandbox), and every outside UDP endpoint a pair of
//! smoltcp packet buffers. Their pages are touched only as data passes,
//! so an idle flow costs a few KB; but they are rings, and a flow whose
//! reader stops (a host peer that never reads, a sandbox that never
//! reads) fills its ring, and a busy one touches all of it as it wraps.
//! What a flow can pin is its buffers' capacity, and smoltcp cannot
//! resize them once the socket exists. The review's 1000 flows whose peers
//! never read took the daemon from 29 to 607 MiB; with the 1024-flow
//! limit per sandbox address and 16,384 per daemon that was several GiB.
//! So the capacity is what is charged, when the flow opens.
//!
//! # The rule
//!
//! Each flow asks for its sizes in order of preference (a TCP flow:
//! [`TCP_BULK`] while the daemon has one of its [`super::BULK_FLOWS`]
//! large send buffers free, else [`TCP_FULL`]; a UDP endpoint
//! [`UDP_FULL`]) and gets the first that keeps both its sandbox's charge
//! and the daemon's within **half** of their budgets. Past half, it gets
//! the small sizes ([`TCP_SMALL`], [`UDP_SMALL`]) while they fit in the
//! whole budgets. A flow that does not fit even so is refused (a RST for
//! TCP, the datagram dropped for UDP) and counted.
//!
//! A TCP flow with small buffers gets small host-socket buffers too
//! ([`HOST_SMALL_BUFFER`]), so what its peer can leave in the kernel for
//! it is bounded as well.
//!
//! So a sandbox's first flows run at full speed (the single bulk flow
//! keeps its 2 MiB send buffer: docs/performance.md), one that opens
//! hundreds of flows gets small buffers for the rest, and none can hold
//! more than [`DEFAULT_PER_SANDBOX`] per network it is on, nor all of
//! them together more than [`DEFAULT_TOTAL`]. With the default flow
//! limits the per-sandbox budget never refuses a flow the flow limit
//! would allow (32 MiB of full buffers, then 1024 small ones of 32 KiB
//! fit in the other 32 MiB); the daemon-wide one refuses once 256 MiB of
//! full and 256 MiB of small buffers (8,192 small TCP flows) are held.
//!
//! Closed bulk sockets the engine keeps for reuse keep their daemon-wide
//! charge (their pages stay touched) but are no sandbox's; an engine
//! drops its own before it refuses a flow for the daemon's budget.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::{TCP_BUFFER, TCP_BULK_BUFFER};

/// Default budget of one sandbox address's NAT buffers on one network.
pub const DEFAULT_PER_SANDBOX: usize = 64 << 20;

/// Default budget of all NAT buffers of the daemon.
pub const DEFAULT_TOTAL: usize = 512 << 20;

/// Each way of a TCP flow given small buffers.
pub const TCP_SMALL_BUFFER: usize = 16 << 10;

/// The send and receive buffers (`SO_SNDBUF`, `SO_RCVBUF`) of the host
/// socket of a TCP flow given small buffers. Other host sockets keep the
/// kernel's autotuning, which on the host's loopback (MSS 64 KiB) gives a
/// new connection's send buffer about 1.3 MiB at once: kernel memory a
/// host peer that never reads leaves filled, outside the daemon's RSS but
/// against the host's `tcp_mem`.
pub const HOST_SMALL_BUFFER: usize = 64 << 10;

/// Each way of a UDP endpoint given small buffers: one datagram of the
/// largest size still fits.
pub const UDP_SMALL_BUFFER: usize = 64 << 10;

/// Each way of a UDP endpoint's full buffers.
pub const UDP_BUFFER: usize = 256 << 10;

/// A TCP flow with one of the daemon's large send buffers.
pub const TCP_BULK: Sizes = Sizes {
    rx: TCP_BUFFER,
    tx: TCP_BULK_BUFFER,
};

/// A TCP flow's full buffers.
pub const TCP_FULL: Sizes = Sizes {
    rx: TCP_BUFFER,
    tx: TCP_BUFFER,
};

/// A TCP flow's buffers once half a budget is spent.
pub const TCP_SMALL: Sizes = Sizes {
    rx: TCP_SMALL_BUFFER,
    tx: TCP_SMALL_BUFFER,
};

/// A UDP endpoint's full buffers.
pub const UDP_FULL: Sizes = Sizes {
    rx: UDP_BUFFER,
    tx: UDP_BUFFER,
};

/// A UDP endpoint's buffers once half a budget is spent.
pub const UDP_SMALL: Sizes = Sizes {
    rx: UDP_SMALL_BUFFER,
    tx: UDP_SMALL_BUFFER,
};

/// The two budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes of buffers per sandbox address (per network).
    pub per_sandbox: usize,
    /// Bytes of buffers of the whole daemon.
    pub total: usize,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            per_sandbox: DEFAULT_PER_SANDBOX,
            total: DEFAULT_TOTAL,
        }
    }
}

/// The sizes of a flow's two buffers: `rx` holds what the sandbox sent,
/// `tx` what goes to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub rx: usize,
    pub tx: usize,
}

impl Sizes {
    /// What the flow is charged.
    pub fn bytes(self) -> usize {
        self.rx + self.tx
    }
}

/// The sizes a new flow gets: the first of `wanted` (largest first) that
/// keeps the sandbox's charge (`sandbox` bytes now) and the daemon's
/// (`daemon` bytes now) within half of their budgets, else `small` if it
/// fits in the whole budgets, else `None` (refuse the flow).
pub fn choose(
    wanted: &[Sizes],
    small: Sizes,
    sandbox: usize,
    daemon: usize,
    budget: Budget,
) -> Option<Sizes> {
    let fits = |sizes: Sizes, sandbox_limit: usize, daemon_limit: usize| {
        sandbox.saturating_add(sizes.bytes()) <= sandbox_limit
            && daemon.saturating_add(sizes.bytes()) <= daemon_limit
    };
    wanted
        .iter()
        .copied()
        .find(|&s| fits(s, budget.per_sandbox / 2, budget.total / 2))
        .or_else(|| fits(small, budget.per_sandbox, budget.total).then_some(small))
}

/// What each sandbox address of one network is charged.
#[derive(Debug, Default)]
pub struct Charges {
    bytes: HashMap<Ipv4Addr, usize>,
    total: usize,
}

impl Charges {
    /// What `src` holds.
    pub fn get(&self, src: Ipv4Addr) -> usize {
        self.bytes.get(&src).copied().unwrap_or(0)
    }

    /// Charge `src` `n` more bytes.
    pub fn add(&mut self, src: Ipv4Addr, n: usize) {
        *self.bytes.entry(src).or_insert(0) += n;
        self.total += n;
    }

    /// Give `n` of `src`'s bytes back (never below zero).
    pub fn release(&mut self, src: Ipv4Addr, n: usize) {
        if let Some(held) = self.bytes.get_mut(&src) {
            let n = n.min(*held);
            *held -= n;
            self.total -= n;
            if *held == 0 {
                self.bytes.remove(&src);
            }
        }
    }

    /// What every sandbox of the network holds together.
    pub fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 2);
    const B: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 3);

    /// Open TCP flows for one sandbox until refused (nothing ever
    /// closes), as the engine would: (bulk, full, small) counts.
    fn flood(budget: Budget, daemon_start: usize, bulk_slots: usize) -> (usize, usize, usize) {
        let (mut sandbox, mut daemon) = (0, daemon_start);
        let (mut bulk, mut full, mut small) = (0, 0, 0);
        loop {
            let wanted: &[Sizes] = if bulk < bulk_slots {
                &[TCP_BULK, TCP_FULL]
            } else {
                &[TCP_FULL]
            };
            let Some(sizes) = choose(wanted, TCP_SMALL, sandbox, daemon, budget) else {
                return (bulk, full, small);
            };
            match sizes {
                TCP_BULK => bulk += 1,
                TCP_FULL => full += 1,
                _ => small += 1,
            }
            sandbox += sizes.bytes();
            daemon += sizes.bytes();
            assert!(sandbox <= budget.per_sandbox && daemon <= budget.total);
        }
    }

    #[test]
    fn a_sandbox_gets_full_buffers_to_half_its_budget_then_small_ones() {
        let (bulk, full, small) = flood(Budget::default(), 0, 32);
        // 14 x 2.25 MiB = 31.5 MiB, then one 512 KiB flow reaches 32 MiB.
        assert_eq!((bulk, full), (14, 1), "a sandbox never takes all 32");
        assert_eq!(small, 1024, "32 MiB of 32 KiB flows");
        // So the default flow limit (1024 per sandbox) binds first.
        assert!(bulk + full + small >= 1024);
    }

    #[test]
    fn the_daemons_budget_binds_across_sandboxes() {
        let budget = Budget::default();
        // Other sandboxes hold 300 MiB already: past half, small only.
        let (bulk, full, small) = flood(budget, 300 << 20, 32);
        assert_eq!((bulk, full), (0, 0));
        assert_eq!(
            small,
            (64 << 20) / TCP_SMALL.bytes(),
            "its own budget binds"
        );
        // 500 MiB: the daemon's budget binds.
        let (_, _, small) = flood(budget, 500 << 20, 32);
        assert_eq!(small, (12 << 20) / TCP_SMALL.bytes());
        // Full.
        assert_eq!(flood(budget, 512 << 20, 32), (0, 0, 0));
    }

    #[test]
    fn the_first_flow_keeps_its_bulk_send_buffer() {
        let choice = choose(&[TCP_BULK, TCP_FULL], TCP_SMALL, 0, 0, Budget::default());
        assert_eq!(choice, Some(TCP_BULK));
        // No bulk slot: full sizes.
        let choice = choose(&[TCP_FULL], TCP_SMALL, 0, 0, Budget::default());
        assert_eq!(choice, Some(TCP_FULL));
        // A budget too small for even the small sizes refuses.
        let tiny = Budget {
            per_sandbox: 1000,
            total: 1 << 30,
        };
        assert_eq!(choose(&[TCP_FULL], TCP_SMALL, 0, 0, tiny), None);
        // A UDP endpoint's small buffers still hold the largest datagram.
        const { assert!(UDP_SMALL_BUFFER >= 65507) };
    }

    #[test]
    fn charges_are_per_sandbox_and_never_negative() {
        let mut c = Charges::default();
        c.add(A, 100);
        c.add(B, 50);
        c.add(A, 10);
        assert_eq!((c.get(A), c.get(B), c.total()), (110, 50, 160));
        c.release(A, 110);
        c.release(B, 500);
        c.release(B, 1);
        assert_eq!((c.get(A), c.get(B), c.total()), (0, 0, 0));
        assert!(c.bytes.is_empty(), "no entry left behind");
    }
}
