//! Any frame from a sandbox through the switch's forwarding decision, on a
//! switch with two bound ports, then the same bytes as if from the gateway;
//! then the input read as a TAP gives it with `IFF_VNET_HDR` (a virtio-net
//! header a sandbox's root can shape, then the frame): the header checked,
//! and what an accepted one offloads re-encoded and completed as the
//! forwarding thread does. Nothing may panic; the fuzzer finds the inputs
//! that would.
#![no_main]

use std::net::Ipv4Addr;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use warren::switch::core::{Core, CoreConfig, PortId};
use warren::switch::vnet::{self, Header, HDR_LEN};

const GW: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x01];

fuzz_target!(|data: &[u8]| {
    let mut core = Core::new(&CoreConfig::new(GW));
    let (Ok(a), Ok(_b)): (Result<PortId, _>, Result<PortId, _>) = (
        core.add_port(
            [0x02, 0x42, 0xac, 0x11, 0x00, 0x02],
            Ipv4Addr::new(172, 17, 0, 2),
        ),
        core.add_port(
            [0x02, 0x42, 0xac, 0x11, 0x00, 0x03],
            Ipv4Addr::new(172, 17, 0, 3),
        ),
    ) else {
        return;
    };
    let now = Instant::now();
    let _ = core.ingress(now, a, data);
    let _ = core.from_gateway(data);
    if let Some((h, frame)) = data.split_first_chunk::<HDR_LEN>() {
        let (_, offload) = core.ingress_vnet(now, a, &Header::parse(h), frame);
        let _ = vnet::encode(offload, frame);
        let mut copy = frame.to_vec();
        let _ = vnet::complete(&mut copy, offload);
    }
    core.expire(now);
});
