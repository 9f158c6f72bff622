//! Any bytes as a DNS query to the answering core, over UDP and TCP, from a
//! sandbox on a network with names (so local lookups, PTR, round robin and
//! truncation paths are all reachable).
#![no_main]

use std::net::Ipv4Addr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use warren::gateway::dns::{
    answer, EndpointInfo, NameTable, NetworkInfo, Request, Rng, SandboxInfo, Transport,
};

fn table() -> &'static NameTable {
    static TABLE: OnceLock<NameTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let nets = [NetworkInfo {
            name: "dev".into(),
            internal: false,
            names_enabled: true,
            gateway: Ipv4Addr::new(172, 18, 0, 1),
        }];
        let sandboxes: Vec<SandboxInfo> = (2..6)
            .map(|i| SandboxInfo {
                name: format!("es-{i}"),
                short_id: format!("{i:012x}"),
                endpoints: vec![EndpointInfo {
                    network: "dev".into(),
                    ip: Ipv4Addr::new(172, 18, 0, i),
                    aliases: vec!["es".into()],
                }],
            })
            .collect();
        NameTable::build(&nets, &sandboxes)
    })
}

fuzz_target!(|data: &[u8]| {
    let mut rng = Rng::new(7);
    for transport in [
        Transport::Udp { max: 512 },
        Transport::Udp { max: 4096 },
        Transport::Tcp,
    ] {
        let req = Request {
            network: "dev",
            asker: Ipv4Addr::new(172, 18, 0, 2),
            bytes: data,
            transport,
        };
        let _ = answer(table(), &req, &mut rng);
    }
});
