//! Any frame from a sandbox through the switch's forwarding decision, on a
//! switch with two bound ports, then the same bytes as if from the gateway.
//! The decision must never panic; the fuzzer finds the inputs that would.
#![no_main]

use std::net::Ipv4Addr;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use warren::switch::core::{Core, CoreConfig, PortId};

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
    core.expire(now);
});
