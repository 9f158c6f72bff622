//! A datagram as it arrives on an overlay network's VXLAN socket, from a
//! member or not: the first byte picks the sender (a member with
//! endpoints, a member without, a stranger), the rest is the datagram,
//! decapsulated and offered to the peer table's admission check, and (when
//! admitted) its destination routed through the table. Then the same bytes
//! as a frame to encapsulate. Nothing may panic, and an admitted frame must
//! be one the table can vouch for: its source MAC registered at the sender.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use warren::switch::vxlan::{self, Peer, PeerTable};

const VNI: u32 = 4097;

fn table() -> PeerTable {
    let mut t = PeerTable::new(VNI);
    for (i, host) in [(2u8, 11u8), (3, 11), (4, 12)] {
        let _ = t.insert(Peer {
            vtep: SocketAddr::from(([10, 249, 0, host], vxlan::DEFAULT_PORT)),
            mac: [0x02, 0x42, 0x0a, 0x00, 0x01, i],
            ipv4: Ipv4Addr::new(10, 0, 1, i),
        });
    }
    t
}

fuzz_target!(|data: &[u8]| {
    let Some((&who, datagram)) = data.split_first() else {
        return;
    };
    let t = table();
    let from = SocketAddr::from(([10, 249, 0, 10 + who % 4], 40000 + u16::from(who)));
    if let Ok((vni, inner)) = vxlan::decapsulate(datagram) {
        if t.admit(from, vni, inner).is_ok() {
            assert_eq!(vni, VNI);
            let src: [u8; 6] = inner[6..12].try_into().unwrap();
            assert_eq!(t.route(&src).map(|a| a.ip()), Ok(from.ip()));
            let dst: [u8; 6] = inner[..6].try_into().unwrap();
            let _ = t.route(&dst);
        }
    }
    let mut out = vec![0u8; datagram.len() + vxlan::HEADER_LEN];
    let n = vxlan::encapsulate(VNI, datagram, &mut out).expect("room for the header");
    if datagram.len() >= 14 {
        let (vni, inner) = vxlan::decapsulate(&out[..n]).expect("our own datagram");
        assert_eq!((vni, inner), (VNI, datagram));
    }
});
